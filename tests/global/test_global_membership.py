"""Membership by heartbeat: a node killed or frozen is dead to the others, and its tunnels move."""

import os
import signal

import pytest

from globaltest_helpers import make_account, until

pytestmark = pytest.mark.timeout(180)


def placed(node, acct, socket_id) -> list:
    return sorted(t["tunnel_server"] for t in node.api(
        "GET", "/socket/{}/tunnel".format(socket_id), token=acct.token).body)


def spread_socket(cluster, acct) -> dict:
    a = cluster.nodes[0]
    sock = a.api("POST", "/socket", {"name": "spread"}, token=acct.token).body
    for _ in range(3):
        assert a.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {},
                     token=acct.token).status == 200
    until(lambda: all(len(placed(n, acct, sock["socket_id"])) == 3 for n in cluster.nodes),
          what="three tunnels everywhere")
    return sock


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_dead_node_drops_out_and_its_tunnels_move_to_live_ones(cluster, tmp_path, how):
    acct = make_account(cluster.nodes[0], tmp_path)
    sock = spread_socket(cluster, acct)
    victim = cluster.nodes[2]
    alive = cluster.nodes[:2]
    assert placed(alive[0], acct, sock["socket_id"]) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    pid = victim.pid
    if how == "killed":
        os.kill(pid, signal.SIGKILL)         # the data plane follows it (PDEATHSIG)
    else:
        os.kill(pid, signal.SIGSTOP)
        for child in victim.child_pids():
            os.kill(child, signal.SIGSTOP)
    try:
        cluster.wait_live(2, among=alive)
        for node in alive:
            assert cluster.health(node)[1]["live_nodes"] == ["node1", "node2"]
            until(lambda node=node: "127.0.1.3" not in placed(node, acct, sock["socket_id"]),
                  what="the dead node's tunnel moved")
            servers = placed(node, acct, sock["socket_id"])
            assert set(servers) == {"127.0.1.1", "127.0.1.2"} and len(servers) == 3
    finally:
        if how == "frozen":
            for child in victim.child_pids():
                os.kill(child, signal.SIGCONT)
            os.kill(pid, signal.SIGCONT)
        else:
            victim.stop()
        victim.stop()
        victim.start()               # back for the next test of the module
    cluster.wait_live(3)
