"""mysocketd on an edge of three nodes: from a node's death to every Service on two live nodes again (#26).

Three edge nodes on one PostgreSQL, one mysocketd replica exposing `services`
Services, each with connections on two nodes (--edge-connections 2). The node
holding the most connections (never the one whose API the controller uses) is
SIGKILLed with its data plane (then, restarted, another one is frozen with
SIGSTOP: silent until declared dead); then, polled every 50 ms, the moment the edge
has moved every tunnel off it (no `tunnel_server` names it: the edge's own
share, ~3 s of which is declaring the node dead) and the moment every Service
again has forwards on two live nodes, as the nodes' `/_admin/tunnels` report.
One run of each: the setup (PostgreSQL, three nodes, a controller) costs ~20 s.

    .venv/bin/python -m bench --only global          # inside `unshare --net`, as make bench runs it
"""

import os
import signal
import time

from devcluster.edgenodes import GlobalScene
from edge.clustertesting import EdgeCluster
from edge.pgtesting import PostgresServer


def run(stack, results, services=10):
    work = stack.workdir / "global"
    names = [f"svc{i:02d}" for i in range(services)]
    with PostgresServer() as pg, EdgeCluster(work / "cluster", pg.new_database("globalctl"), 3) as edge:
        edge.wait_live(3)
        with GlobalScene.start(stack.cp, stack.sa_kubeconfig, edge, work / "scene", names,
                               log_level="INFO") as scene:
            for how in ("killed", "frozen"):
                _lose_a_node(scene, results, how)


def _lose_a_node(scene, results, how):
    """One loss, measured; the node is whole again afterwards (restarted on its data directory)."""
    edge, services = scene.edge, len(scene.dnsnames)
    scene.wait_on_two_nodes(edge.nodes, timeout=60)
    victim = scene.victim()
    alive = [n for n in edge.nodes if n is not victim]
    on_victim = sum(victim.host in hosts for hosts in scene.connections().values())
    pids = [victim.pid, *victim.child_pids()]
    lost_at = scene.kill(victim, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    try:
        moved_at = None
        deadline = lost_at + 120
        while time.monotonic() < deadline:
            if moved_at is None and all(victim.host not in s for s in scene.placed().values()):
                moved_at = time.monotonic()
            if moved_at is not None and scene.on_two_nodes(alive):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"not every Service on two live nodes 120 s after the loss: "
                               f"{scene.connections(alive)}")
        back_at = time.monotonic()
    finally:
        for pid in pids if how == "frozen" else ():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        victim.stop()
        victim.start()
        edge.wait_live(3)
    results.add(f"global.node_{how}.moved_by_edge", [moved_at - lost_at], "s",
                note=f"the edge moved every tunnel off the {how} node ({on_victim} of {services} Services had one)")
    results.add(f"global.node_{how}.two_live_nodes", [back_at - lost_at], "s",
                note=f"every one of {services} Services (one replica) on two live nodes again")
    print(f"node {how} ({on_victim} of {services} Services on it): the edge moved its tunnels after "
          f"{moved_at - lost_at:.2f} s; every Service on two live nodes after {back_at - lost_at:.2f} s", flush=True)
