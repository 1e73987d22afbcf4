"""mysocketd on an edge of three nodes: real PostgreSQL, real apiserver, real ssh, one replica.

Each Service keeps connections on two nodes (--edge-connections, default 2),
each tunnel connected to the node the edge placed it on (`tunnel_server`),
the edge's host key pinned strictly by one `known_hosts` line for all nodes.
Then a node is SIGKILLed, or frozen with SIGSTOP (silent: its sessions end
only by ssh's keepalives), under a request every 20 ms per Service (the
client tries each node's address in turn, as curl and browsers do with several
A records): no request fails except one in flight on the lost node, and every
Service has connections on two live nodes again (the edge moved the lost
node's tunnels; the controller followed them). How long that takes is a
`make bench` figure (bench/globalctl.py), never asserted here.

One setup for the module (three nodes, one controller, three Services): the
first test looks, each of the others loses a node and starts it again at its
end.
"""

import os
import signal
import time

import pytest

from devcluster.edgenodes import GlobalScene
from globaltest_helpers import Visitor, until

pytestmark = pytest.mark.timeout(300)
SERVICES = ("web", "api", "shop")


@pytest.fixture(scope="module")
def scene(control_plane, controller_kubeconfig, cluster, tmp_path_factory):
    with GlobalScene.start(control_plane, controller_kubeconfig, cluster, tmp_path_factory.mktemp("scene"),
                           SERVICES) as scene:
        yield scene


def test_one_replica_keeps_every_service_on_two_nodes_where_the_edge_placed_its_tunnels(scene, cluster):
    connections = until(lambda: (lambda c: c if all(len(h) == 2 for h in c.values()) else None)(
        scene.connections()), timeout=30, interval=0.1, what="every Service on two nodes")
    placed = scene.placed()
    for name in SERVICES:
        assert len(set(placed[name])) == 2, placed            # the edge put them on distinct nodes
        assert connections[name] == set(placed[name]), (connections, placed)   # ... and that is where they are
    # One session per node (shards of 20), every one checked against the one pinned known_hosts line.
    servers = {host for hosts in placed.values() for host in hosts}
    assert len(scene.controller.ssh_children()) == len(servers)
    for name, dnsname in scene.dnsnames.items():
        for node in cluster.nodes:                            # and each name answers on every node
            status, body = node.get(dnsname)
            assert (status, body.startswith("Server: " + name)) == (200, True), (node.host, status, body)


def test_a_node_that_drops_one_forward_ends_its_session_and_the_shard_is_restarted_at_once(scene, cluster):
    """By design (edge/README.md, no stale binding) the edge ends the whole SSH session of a forward it
    drops; with shared sessions that costs the shard's other forwards a restart, which must not wait."""
    until(lambda: scene.on_two_nodes(), timeout=30, interval=0.1, what="every Service on two nodes")
    node = scene.victim()
    held = {t["local_port"] for t in node.tunnels()}
    children = scene.controller.ssh_children()
    sessions = {p.pid: p.cmdline()[-1] for p in children}
    [old] = [p for p in children if p.cmdline()[-1] == node.host]
    # A session up for less than 3 s that ends is a flap and backs off (lib/tunnels.py); this one is older.
    until(lambda: time.time() - old.create_time() > 3.5, timeout=10, interval=0.1, what="a settled session")
    old = old.pid
    logged = len(scene.controller.log_records())
    assert node.api("POST", "/_admin/forget-forward", {"local_port": min(held)}).body == {"forgotten": True}
    until(lambda: held <= {t["local_port"] for t in node.tunnels()} and old not in {
        p.pid for p in scene.controller.ssh_children()}, timeout=30, interval=0.1, what="the shard back")
    now = {p.pid: p.cmdline()[-1] for p in scene.controller.ssh_children()}
    assert {pid: h for pid, h in now.items() if h != node.host} == {
        pid: h for pid, h in sessions.items() if h != node.host}    # the other nodes' sessions untouched
    said = [r["message"] for r in scene.controller.log_records()[logged:] if r.get("level") == "WARNING"]
    assert any(f"restarting it with its {len(held)} forwards" in m for m in said), said
    assert not [m for m in said if m.startswith("tunnel failed")], said     # restarted at once: no backoff


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_node_lost_under_load_costs_no_request_and_every_service_is_on_two_live_nodes_again(scene, cluster, how):
    until(lambda: scene.on_two_nodes(), timeout=30, interval=0.1, what="every Service on two nodes")
    victim = scene.victim()
    alive = [n for n in cluster.nodes if n is not victim]
    pids = [victim.pid, *victim.child_pids()]
    visitors = [Visitor(cluster.nodes, dnsname, patience=3.0) for dnsname in scene.dnsnames.values()]
    try:
        for v in visitors:
            v.__enter__()
        until(lambda: all(sum(v.answers.values()) >= 20 for v in visitors), what="answers before the loss")
        lost_at = scene.kill(victim, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        cluster.wait_live(2, among=alive, timeout=20)
        scene.wait_on_two_nodes(alive, timeout=60)
        placed = scene.placed()
        assert all(victim.host not in hosts for hosts in placed.values()), placed
        before = [sum(v.answers.values()) for v in visitors]
        until(lambda: all(sum(v.answers.values()) >= b + 20 for v, b in zip(visitors, before)),
              what="answers after")
    finally:
        for v in visitors:
            v.__exit__(None, None, None)
        for pid in pids if how == "frozen" else ():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        victim.stop()
        victim.start()                                        # the module's cluster whole again
    for v, dnsname in zip(visitors, scene.dnsnames.values()):
        in_flight = [f for f in v.failures if f["started"] <= lost_at <= f["ended"]
                     and f["reason"] == "upstream-failed"]
        assert len(in_flight) <= 1, in_flight                # one request at a time: at most one was in flight
        assert [f for f in v.failures if f not in in_flight] == [], (dnsname, [
            (f["node"], f["status"], f["reason"], f["body"], round(f["started"] - lost_at, 2)) for f in v.failures[:5]])
        assert len(v.answers) == 1 and next(iter(v.answers)).startswith("Server: "), v.answers
    cluster.wait_live(3)
