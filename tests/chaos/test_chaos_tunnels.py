"""Faults of the data plane: ssh children killed, frozen or stale, and the edge restarted."""

import random
import signal
import time

import pytest
from chaos_world import measure, record

from devcluster.stack import account_sockets

SERVICES = [f"svc{i:02d}" for i in range(20)]


@pytest.fixture(scope="module", autouse=True)
def twenty(world):
    world.expose(SERVICES)
    world.check()


def child_of(world, name):
    """The ssh child forwarding to this Service's tunnel port (the world's one replica's own tunnel)."""
    svc = world.services()[name]
    socket_id = svc["metadata"]["annotations"]["mysocket.io/socket-id"]
    [sock] = [s for s in account_sockets(world.edge, world.account) if s["socket_id"] == socket_id]
    [port] = [t["local_port"] for t in sock["tunnels"]]
    [child] = [c for c in world.controller.ssh_children() if any(a.startswith(f"{port}:") for a in c.cmdline())]
    return child


def outage(world, dnsname, fault):
    """Seconds from the fault until the name answers again (after it was seen down)."""
    world.wait_tunnels_up()
    started = time.monotonic()
    fault()
    measure(f"{dnsname} down", lambda: not world.answers(dnsname), timeout=10)
    measure(f"{dnsname} back", lambda: world.answers(dnsname), timeout=60)
    return time.monotonic() - started


def test_sigkill_of_a_random_ssh_child_20_times(world):
    rng = random.Random(7)
    times = []
    dnsnames = world.dnsnames()
    for name in rng.sample(SERVICES, 20):
        child = child_of(world, name)
        times.append(outage(world, dnsnames[name], lambda: child.send_signal(signal.SIGKILL)))
    record("SIGKILL of a random ssh child", times, world.check())


def test_sigstop_of_an_ssh_child(world):
    times = []
    dnsnames = world.dnsnames()
    for name in SERVICES[:3]:
        child = child_of(world, name)
        times.append(outage(world, dnsnames[name], lambda: child.send_signal(signal.SIGSTOP)))
    record("SIGSTOP of an ssh child (hang)", times, world.check())


def test_stale_binding_on_the_edge_is_found_by_the_probe(world):
    times = []
    dnsnames = world.dnsnames()
    for name in SERVICES[3:5]:
        argv = child_of(world, name).cmdline()
        port = int(argv[argv.index("-R") + 1].split(":")[0])
        forget = lambda: world.edge.api("POST", "/_admin/forget-forward", {"local_port": port})  # noqa: E731
        times.append(outage(world, dnsnames[name], forget))
    record("stale binding on the edge (ssh alive, forward gone)", times, world.check())


def test_edge_restart_with_20_exposed_services(world):
    times = []
    for _ in range(2):
        world.wait_tunnels_up()
        started = time.monotonic()
        world.edge.restart()
        world.wait_all_answer(timeout=60)
        times.append(time.monotonic() - started)
    record("edge restart, 20 Services (all SSH sessions drop)", times, world.check())


def ssh_restarts(world):
    return sum(float(line.rsplit(" ", 1)[1]) for c in world.controllers for line in c.metrics().splitlines()
               if line.startswith("mysocketd_ssh_restarts_total "))


def test_edge_drops_every_ssh_session(world):
    times = []
    for _ in range(2):
        world.wait_tunnels_up()
        started = time.monotonic()
        restarts = ssh_restarts(world)
        dropped = world.edge.api("POST", "/_admin/drop-ssh").body["dropped"]
        assert dropped >= len(world.exposed())
        # Seen by the controller, not by racing a request against its reconnect.
        measure("every dropped session restarted", lambda: ssh_restarts(world) >= restarts + dropped, timeout=30)
        world.wait_all_answer(timeout=60)
        times.append(time.monotonic() - started)
    record("edge drops all SSH sessions, 20 Services", times, world.check())
