"""A node lost under load: killed (SIGKILL) or frozen (SIGSTOP, silent until declared dead).

A visitor sends a request every 20 ms and, as curl and browsers do with several
A records, tries the next node's address when one refuses or does not answer.
Each tunnel's client is what a controller does: it connects to the tunnel's
``tunnel_server`` and, when its ssh exits, asks again and reconnects at once.
No request may fail except those in flight on the lost node (a request relayed
to it whose answer was cut: 502 ``upstream-failed``, never retried because the
app may have acted on it), and every tunnel must be connected again on a live
node.
"""

import os
import signal
import time

import pytest

from globaltest_helpers import TunnelFollower, Visitor, make_account, until

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_node_lost_under_load_costs_no_request_and_its_tunnels_come_back_elsewhere(
        cluster, tmp_path, ssh, backend, how):
    a = cluster.nodes[0]
    acct = make_account(a, tmp_path)
    sock = a.api("POST", "/socket", {"name": "failover"}, token=acct.token).body
    tunnels = [a.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {}, token=acct.token).body
               for _ in range(2)]
    followers = [TunnelFollower(cluster, acct, sock, t, backend(name).port, ssh).start()
                 for t, name in zip(tunnels, ("one", "two"))]
    try:
        for f in followers:
            cluster.by_host(f.server).wait_forward(f.port)
        victim = cluster.by_host(tunnels[0]["tunnel_server"])
        alive = [n for n in cluster.nodes if n is not victim]
        with Visitor(cluster.nodes, sock["dnsname"], patience=3.0) as visitor:
            until(lambda: sum(visitor.answers.values()) >= 20, what="answers before the loss")
            pids = [victim.pid, *victim.child_pids()]
            lost_at = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
            cluster.wait_live(2, among=alive, timeout=20)
            for f in followers:                     # every tunnel connected again on a live node
                until(lambda f=f: f.server != victim.host and f.port in {
                    t["local_port"] for t in cluster.by_host(f.server).tunnels()},
                    timeout=40, interval=0.1, what="tunnel {} back on a live node".format(f.port))
            before = sum(visitor.answers.values())
            until(lambda: sum(visitor.answers.values()) >= before + 20, what="answers after")
        in_flight = [f for f in visitor.failures if f["started"] <= lost_at <= f["ended"]
                     and f["reason"] == "upstream-failed"]
        assert len(in_flight) <= 1                 # one request at a time: at most one was in flight
        assert [f for f in visitor.failures if f not in in_flight] == [], visitor.failures[:5]
        assert set(visitor.answers) == {"one /\n", "two /\n"}, visitor.answers
        for node in alive:                          # and both serve through every live node
            seen = set()
            until(lambda node=node, seen=seen: seen.add(node.get(sock["dnsname"], "/")[1]) or
                  seen == {"one /\n", "two /\n"}, interval=0.1, what="both tunnels through " + node.host)
    finally:
        for f in followers:
            f.stop()
        if how == "frozen":
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        victim.stop()
        victim.start()                               # back for the next case of the module
    cluster.wait_live(3)
