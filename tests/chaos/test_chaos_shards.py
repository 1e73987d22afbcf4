"""Shared ssh sessions under load: a change in one shard never interrupts the traffic of the others.

One replica (so nothing hides an interruption: no other replica's tunnel serves the name meanwhile),
25 Services: a session of 20 forwards (#0) and one of 5 (#1), as lib/tunnels.py's rule places them.
Requests go every 20 ms to Services of both shards while
- Services are added to shard #1 and taken away from it (`ssh -O forward` / `-O cancel` in the
  running session): no request of any other Service fails, and no session restarts;
- the session of shard #0 is SIGKILLed: its names go dark until it is back, the other shard's
  session keeps its pid, and none of its requests fails.
"""

import signal
import time

import pytest
from chaos_world import record
from load import Load

from devcluster.stack import wait_for

FIRST = [f"a{i:02d}" for i in range(25)]
ADDED = [f"b{i:02d}" for i in range(10)]


@pytest.fixture(scope="module", autouse=True)
def twenty_five(world):
    for name in FIRST:                  # one at a time, so the shards fill in this order
        world.expose([name], wait=False)
        wait_for(f"{name} forwarded", lambda: world.controller.session_of(world.ns, name), timeout=30)
    world.wait_all_answer()
    world.check()


def shard(world, name):
    return world.controller.session_of(world.ns, name)


def loads(world, names):
    dnsnames = world.dnsnames()
    return [Load(world.edge, dnsnames[n]) for n in names]


def test_adding_and_removing_services_in_a_shard_never_interrupts_the_others(world):
    first, second = shard(world, FIRST[0]), shard(world, FIRST[-1])
    assert first.pid != second.pid
    watched = [FIRST[0], FIRST[-1], FIRST[-2]]              # one of shard #0, two of shard #1
    started = time.monotonic()
    with loads(world, watched)[0] as l0, loads(world, watched[1:2])[0] as l1, \
            loads(world, watched[2:])[0] as l2:
        for load in (l0, l1, l2):
            load.wait_for_answers(10)
        world.expose(ADDED)                                  # into shard #1, the lowest with room
        assert {shard(world, n).pid for n in ADDED} == {second.pid}
        world.cluster.annotate(ADDED[0], **{"mysocket.io/enabled": "false"})
        for name in ADDED[1:5]:
            world.cluster.delete(name)
        wait_for("five forwards cancelled", lambda: f"mysocketd_tunnels_up {float(len(FIRST) + 5)}"
                 in world.controller.metrics(), timeout=30)
        for load in (l0, l1, l2):
            load.wait_for_answers(10, after=time.monotonic())
    answers = [a for load in (l0, l1, l2) for a in load.answers]
    failed = Load.failed(answers)
    assert len(answers) > 100 and failed == [], failed[:5]
    assert shard(world, FIRST[0]).pid == first.pid and shard(world, FIRST[-1]).pid == second.pid
    record("Services added to and removed from a running shard, under load", [time.monotonic() - started],
           {**world.check(), "requests": len(answers), "failed": len(failed)})


def test_a_session_death_restarts_only_its_shard(world):
    first, second = shard(world, FIRST[0]), shard(world, FIRST[-1])
    with loads(world, [FIRST[0]])[0] as dead, loads(world, [FIRST[-1]])[0] as other:
        dead.wait_for_answers(10)
        other.wait_for_answers(10)
        killed = time.monotonic()
        first.send_signal(signal.SIGKILL)
        wait_for("a new session for shard #0", lambda: getattr(shard(world, FIRST[0]), "pid", first.pid) != first.pid,
                 timeout=30)
        wait_for("shard #0 answering", lambda: (lambda a: a and a[-1][1] == 200)(dead.since(time.monotonic() - 0.1)),
                 timeout=30)
        back = time.monotonic() - killed
        other.wait_for_answers(10, after=time.monotonic())
    assert Load.failed(other.since(killed)) == [] and len(other.since(killed)) > 10
    assert shard(world, FIRST[-1]).pid == second.pid            # the other shard's session never restarted
    assert shard(world, FIRST[0]).pid != first.pid
    record("SIGKILL of one ssh session of two, under load (its own names only)", [back],
           {**world.check(), "requests": len(other.since(killed)), "failed": 0})
