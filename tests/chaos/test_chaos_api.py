"""Faults of the Mysocket API while Services come and go: 500s, 429s with Retry-After, timeouts."""

import time

import pytest
from chaos_world import measure, record

from devcluster.stack import wait_for

PHASES = [
    ("API: 30% of calls answer 500", {"error_rate": 0.3, "status": 500}),
    ("API: 30% of calls answer 429, Retry-After 1", {"error_rate": 0.3, "status": 429, "retry_after": 1}),
    ("API: 20% of calls time out (held 30 s)", {"timeout_rate": 0.2, "hold": 30}),
]


@pytest.fixture(scope="module", autouse=True)
def some(world):
    world.expose([f"base{i}" for i in range(6)])
    world.check()


@pytest.mark.parametrize("phase", range(len(PHASES)))
def test_services_added_and_removed_under_api_faults(world, phase):
    fault, settings = PHASES[phase]
    added = [f"p{phase}-{i}" for i in range(3)]
    removed = sorted(world.exposed())[:2]
    assert world.edge.api("POST", "/_admin/faults", settings).status == 200
    try:
        started = time.monotonic()
        world.expose(added, wait=False)
        for name in removed:
            world.cluster.delete(name)
        # Judged from outside the API while the faults last: the new names answer, the removed are gone.
        # A held call costs its client 10 s per attempt and can queue others behind it: with one call in
        # five held, one Service took over 120 s in 1 of 3 runs (measured, and recorded below as it is).
        bound = 240 if settings.get("timeout_rate") else 120
        wait_for("the removed Services released", lambda: not set(removed) & set(world.services()), timeout=bound)
        measure("the added Services answering", world.all_answer, timeout=bound, interval=0.1)
        elapsed = time.monotonic() - started
    finally:
        world.edge.api("POST", "/_admin/faults", {})
    record(fault + ", while adding 3 and removing 2 Services", [elapsed], world.check())
