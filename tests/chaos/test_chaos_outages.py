"""The control plane goes away, or the controller freezes, while the world changes."""

import signal
import time

import pytest
from chaos_world import measure, record

from devcluster.stack import wait_for


@pytest.fixture(scope="module", autouse=True)
def some(world):
    world.expose([f"svc{i}" for i in range(5)])
    world.check()


def test_apiserver_stopped_for_30s(world):
    world.wait_tunnels_up()
    dnsnames = list(world.dnsnames().values())
    world.cp.stop_apiserver()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:           # the public names stay up all along
            assert all(world.answers(d) for d in dnsnames), "a tunnel dropped while the apiserver was away"
            time.sleep(1)
    finally:
        world.cp.start_apiserver()
    started = time.monotonic()
    world.expose(["after-outage"], wait=False)
    measure("a Service annotated after the outage answering", world.all_answer, timeout=60, interval=0.1)
    record("kube-apiserver stopped 30 s (then a new Service)", [time.monotonic() - started], world.check())


def test_controller_frozen_for_30s_while_services_change(world):
    removed = ["svc0", "svc1"]
    world.controller.signal(signal.SIGSTOP)
    try:
        world.expose(["frozen0", "frozen1", "frozen2"], wait=False)
        for name in removed:
            world.cluster.delete(name)
        time.sleep(30)
        assert set(removed) <= set(world.services()), "deleted without the controller's clean-up"
    finally:
        world.controller.signal(signal.SIGCONT)
    started = time.monotonic()
    wait_for("the deleted Services released", lambda: not set(removed) & set(world.services()), timeout=60)
    measure("the new Services answering", world.all_answer, timeout=60, interval=0.1)
    record("controller frozen 30 s while 3 added, 2 deleted", [time.monotonic() - started], world.check())
