"""Two replicas with leader election: the leader dies, the standby takes over."""

import time

import pytest
from chaos_world import measure, record

from devcluster.stack import wait_for


@pytest.fixture(scope="module")
def replicas():
    return 2


def leader(world):
    for c in world.controllers:
        if c.http("/readyz") == (200, "leader\n"):
            return c
    return None


def test_leader_failover(world):
    world.expose([f"svc{i}" for i in range(5)])
    world.check()
    kinds = {"SIGKILL": [], "SIGTERM": []}
    for kind in ["SIGKILL", "SIGTERM"] * 2:
        old = wait_for("a leader", lambda: leader(world))
        world.wait_tunnels_up()
        started = time.monotonic()
        if kind == "SIGKILL":
            old.kill()
            old.reap_orphans()                       # the node and its processes are gone
        else:
            assert old.stop() == 0
        measure("the standby leading", lambda: leader(world) not in (None, old), timeout=30, interval=0.05)
        world.wait_all_answer(timeout=60)
        kinds[kind].append(time.monotonic() - started)
        old.start()                                  # back as the standby
    for kind, times in kinds.items():
        record(f"leader failover, 2 replicas ({kind} of the leader)", times, world.check())
