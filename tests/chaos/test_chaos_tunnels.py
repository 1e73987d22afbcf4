"""Faults of the data plane: ssh sessions killed or frozen, a stale forward, and the edge restarted.

A replica holds its forwards in ssh sessions of up to 20 (lib/tunnels.py), so killing "the ssh of a
Service" kills its shard: every forward of that session is down until the session is back. The world
here runs one replica, so the names go dark for that while; with two replicas (test_chaos_replicas.py)
or a pool, the other replica's tunnels hide it and no request fails.
"""

import random
import signal
import time

import pytest
from chaos_world import measure, record

from devcluster.stack import account_sockets, wait_for

SERVICES = [f"svc{i:02d}" for i in range(20)]


@pytest.fixture(scope="module", autouse=True)
def twenty(world):
    world.expose(SERVICES)
    world.check()


def session_of(world, name):
    """The ssh session that holds this Service's forward (the world's one replica's own tunnel)."""
    return wait_for(f"the ssh session of {name}", lambda: world.controller.session_of(world.ns, name))


def port_of(world, name):
    """This Service's tunnel port at the edge (the world's one replica's own tunnel)."""
    svc = world.services()[name]
    socket_id = svc["metadata"]["annotations"]["mysocket.io/socket-id"]
    [sock] = [s for s in account_sockets(world.edge, world.account) if s["socket_id"] == socket_id]
    [port] = [t["local_port"] for t in sock["tunnels"]]
    return port


def outage(world, dnsname, fault):
    """Seconds from the fault until the name answers again (after it was seen down)."""
    world.wait_tunnels_up()
    started = time.monotonic()
    fault()
    measure(f"{dnsname} down", lambda: not world.answers(dnsname), timeout=10)
    measure(f"{dnsname} back", lambda: world.answers(dnsname), timeout=60)
    return time.monotonic() - started


def test_sigkill_of_a_random_services_ssh_session_10_times(world):
    """Ten of the twenty, each time the session that carries it (one shard holds all twenty)."""
    rng = random.Random(7)
    times = []
    dnsnames = world.dnsnames()
    for name in rng.sample(SERVICES, 10):
        session = session_of(world, name)
        times.append(outage(world, dnsnames[name], lambda: session.send_signal(signal.SIGKILL)))
    record("SIGKILL of a Service's ssh session (its shard of 20)", times, world.check())


def test_sigstop_of_an_ssh_session(world):
    times = []
    dnsnames = world.dnsnames()
    for name in SERVICES[:3]:
        session = session_of(world, name)
        times.append(outage(world, dnsnames[name], lambda: session.send_signal(signal.SIGSTOP)))
    record("SIGSTOP of an ssh session (hang)", times, world.check())


def test_stale_binding_on_the_edge_is_found_by_the_probe(world):
    times = []
    dnsnames = world.dnsnames()
    for name in SERVICES[3:5]:
        port = port_of(world, name)
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
        assert dropped >= len(world.ssh_children())     # every session, each holding its shard
        # Seen by the controller, not by racing a request against its reconnect.
        measure("every dropped session restarted", lambda: ssh_restarts(world) >= restarts + dropped, timeout=30)
        world.wait_all_answer(timeout=60)
        times.append(time.monotonic() - started)
    record("edge drops all SSH sessions, 20 Services", times, world.check())
