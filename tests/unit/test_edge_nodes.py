"""The controller's side of an edge of several nodes, in pure parts: where a tunnel connects, how
many tunnels a replica holds, and how soon it looks again when the edge moves one."""

import dataclasses

import pytest
from test_supervisor import World

from lib import config, sshargs, tunnels
from lib.moves import Moves
from lib.serving import Record, Serving, Tunnel, connection_key
from lib.services import Exposure
from lib.sweep import Sweep

SETTINGS = sshargs.SshSettings(host="api.edge", port=2222, identity_file="/state/id", known_hosts_file="/state/kh",
                               strict_host_keys=True)
KEY = ("demo", "web")


def spec(server, port=10001):
    return sshargs.TunnelSpec(local_port=port, target_host="10.96.0.10", target_port=8000, user_name="u1",
                              server=server)


# -- where a tunnel connects -----------------------------------------------------------------


@pytest.mark.parametrize("server, host", [("node2.edge", "node2.edge"), ("", "api.edge")])
def test_a_tunnel_connects_to_its_tunnel_server_on_the_ssh_port(server, host):
    assert sshargs.endpoint_of(spec(server), SETTINGS) == sshargs.Endpoint(host, 2222, "u1")


@pytest.mark.parametrize("port, alias", [(2222, "[api.edge]:2222"), (22, "api.edge")])
def test_every_node_is_checked_against_the_ssh_hosts_known_hosts_line(port, alias):
    """As ssh-keyscan writes it: `[host]:port` unless the port is 22; ssh adds no port to an alias."""
    settings = dataclasses.replace(SETTINGS, port=port)
    endpoint = sshargs.endpoint_of(spec("node3.edge"), settings)
    argv = sshargs.master_argv(endpoint, settings, "/ctl", "/log")
    assert argv[-1] == "node3.edge" and f"HostKeyAlias={alias}" in argv
    assert "StrictHostKeyChecking=yes" in argv


def test_a_moved_forward_leaves_its_failing_session_and_its_new_nodes_session_starts_at_once(tmp_path):
    w = World()
    w.sup = tunnels.Supervisor(SETTINGS, str(tmp_path), seams=w.seams(), clock=lambda: w.now,
                               jitter=lambda a, b: 1.0, stable_after=3.0, backoff_cap=60.0, stop_timeout=0.1,
                               hang_check_every=0.0)
    w.sup.ensure(KEY, spec("node1.edge"))
    w.sup.ensure(("demo", "api"), spec("node1.edge", 10002))
    w.answer_all()
    w.now = 100.0
    [old] = w.sup.sessions.values()
    w.background[old.background]["code"] = 255                      # node1 died
    assert {t.kind for t in w.sup.poll()} == {"down"}
    for _ in range(4):                                               # and every restart is refused
        w.last("master").refused()
        w.sup.poll()
        w.now += 60.0
        w.sup.poll()
    w.last("master").refused()
    assert w.sup.poll()[0].retry_in >= 4.0                           # a backoff that grew
    spawned = len(w.spawned)
    w.sup.ensure(KEY, spec("node3.edge"))                            # the edge moved its tunnel to node3
    [new] = [p for p in w.spawned[spawned:]]
    assert new.kind == "master" and new.argv[-1] == "node3.edge"     # started there and then
    assert KEY not in old.keys and w.sup.session_of(KEY).startswith("u1@node3.edge:2222")


# -- how many tunnels a replica holds ----------------------------------------------------------


class FakeSockets:
    def __init__(self, nodes):
        self.nodes = nodes
        self.added = []
        self.invalidated = 0

    def edge_nodes(self):
        return self.nodes

    def add_tunnel(self, socket, owner, nth=0):
        self.added.append(nth)
        tunnel = {"tunnel_id": f"t{len(socket['tunnels'])}", "local_port": 10000 + len(socket["tunnels"]),
                  "owner": owner, "tunnel_server": f"node{len(socket['tunnels']) + 1}"}
        socket["tunnels"].append(tunnel)
        return tunnel

    def invalidate(self):
        self.invalidated += 1


class FakeSupervisor:
    def __init__(self):
        self.specs = {}

    def ensure(self, key, spec):
        self.specs[key] = spec

    def remove(self, key):
        self.specs.pop(key, None)


SVC = {"metadata": {"uid": "u-1"}}
EXPOSURE = Exposure(namespace="demo", name="web", cluster_ip="10.96.0.10", port=8000)


@pytest.mark.parametrize("connections, nodes, own, added", [
    (2, 3, 1, [1]),             # made by POST /connect with one: a second, on another node
    (2, 3, 0, [0, 1]),          # a replica that does not lead: both its own
    (2, 1, 1, []),              # a single-node edge: one per replica, as before
    (2, 2, 2, []),              # has them
    (3, 2, 1, [1]),             # never more than the edge's live nodes
    (1, 3, 0, [0]),             # --edge-connections 1
])
def test_a_replica_holds_its_connections_on_as_many_nodes_as_the_edge_has(connections, nodes, own, added):
    sockets, supervisor = FakeSockets(nodes), FakeSupervisor()
    serving = Serving(sockets=sockets, supervisor=supervisor, cluster="c1", replica="r1", connections=connections)
    socket = {"socket_id": "s1", "dnsname": "x.edge", "tunnels": [
        {"tunnel_id": "other", "local_port": 9999, "owner": "c1/demo/web/r2", "tunnel_server": "node1"}]}
    for _ in range(own):
        sockets.add_tunnel(socket, serving.owner(KEY).tag)
    sockets.added.clear()
    record = serving.record(KEY, SVC, EXPOSURE, socket)
    assert sockets.added == added
    assert len(record.tunnels) == own + len(added)
    serving.apply(KEY, record, "u1")
    assert sorted(supervisor.specs, key=len) == [connection_key(KEY, i) for i in range(len(record.tunnels))]
    assert [s.server for s in supervisor.specs.values()] == [t.server for t in record.tunnels]
    serving.stop(KEY)
    assert supervisor.specs == {}


# -- looking again when a node is lost -------------------------------------------------------------


class FakeQueue:
    def __init__(self):
        self.added = []

    def add(self, key, delay=0.0):
        self.added.append((key, delay))


def test_a_lost_connection_is_looked_at_again_now_then_every_second_until_up_or_the_window_ends():
    now = [0.0]
    sockets, queue = FakeSockets(3), FakeQueue()
    moves = Moves(sockets=sockets, queue=queue, clock=lambda: now[0], window=15.0, every=1.0)
    assert not moves.due(KEY)
    moves.doubt(KEY, 0)                                  # "down": now
    assert queue.added == [(KEY, 0.0)]
    assert moves.due(KEY) and sockets.invalidated == 1   # its record is dropped, and a fresh list asked for
    assert not moves.due(KEY)                            # once
    moves.doubt(("demo", "api"), 0)                      # a neighbour in the same instant shares the list
    assert moves.due(("demo", "api")) and sockets.invalidated == 1
    looks = 0
    while now[0] < 20.0:
        moves.settle(KEY, lambda: False)                 # still not up
        if not moves.due(KEY):
            break
        looks += 1
        now[0] += 1.0
    assert (looks, now[0]) == (16, 16.0)                 # every second through the window, then no more
    assert sockets.invalidated == 16                     # one list a second, shared
    moves.doubt(KEY, 4)
    assert not moves.due(KEY)                            # past the window: every third failure, as before
    moves.doubt(KEY, 6)
    assert moves.due(KEY)
    moves.settle(KEY, lambda: True)                      # up: the doubt is over
    now[0] += 100.0
    moves.doubt(KEY, 1)                                  # a new loss has a new window
    assert moves.due(KEY)


def test_the_sweep_requeues_a_service_whose_tunnel_moved_or_that_has_fewer_tunnels_than_it_wants():
    class Controller:
        records = {KEY: Record("u-1", EXPOSURE, "s1", "x.edge", (Tunnel("t1", 10001, "node1"),
                                                                   Tunnel("t2", 10002, "node2")))}
        queue = FakeQueue()
        serving = Serving(sockets=None, supervisor=None, cluster="c1", replica="r1", connections=2)

        class sockets:                                  # noqa: N801 -- stands in for the Sockets instance
            nodes = 3

            @classmethod
            def edge_nodes(cls):
                return cls.nodes

    c = Controller()
    snapshot = {"s1": {"socket_id": "s1", "tunnels": [{"tunnel_id": "t1", "tunnel_server": "node1"},
                                                      {"tunnel_id": "t2", "tunnel_server": "node2"}]}}
    Sweep(c)._requeue_vanished(snapshot)
    assert KEY in c.records and c.queue.added == []
    snapshot["s1"]["tunnels"][1]["tunnel_server"] = "node3"
    Sweep(c)._requeue_vanished(snapshot)
    assert KEY not in c.records and c.queue.added == [(KEY, 0.0)]
    c.records[KEY] = Record("u-1", EXPOSURE, "s1", "x.edge", (Tunnel("t1", 10001, "node1"),))
    Sweep(c)._requeue_vanished(snapshot)                # one of two, and the edge has three nodes
    assert KEY not in c.records and c.queue.added == [(KEY, 0.0), (KEY, 0.0)]
    c.records[KEY] = Record("u-1", EXPOSURE, "s1", "x.edge", (Tunnel("t1", 10001, "node1"),))
    c.sockets.nodes = 1
    Sweep(c)._requeue_vanished(snapshot)                # one of two, but the edge has one node: kept
    assert KEY in c.records and c.queue.added == [(KEY, 0.0), (KEY, 0.0)]


@pytest.mark.parametrize("value, ok", [("2", True), ("1", True), ("0", False), ("9", False)])
def test_edge_connections_is_a_small_positive_number(value, ok):
    argv = ["--api-url", "http://127.0.0.1:1/", "--email", "a@b.c", "--password", "p", "--edge-connections", value]
    if ok:
        assert config.load(argv).edge_connections == int(value)
    else:
        with pytest.raises(config.ConfigError, match="--edge-connections must be from 1 to 8"):
            config.load(argv)
    assert config.load(argv[:-2]).edge_connections == 2


def test_a_node_leaving_the_live_set_has_every_service_looked_at_again_for_a_while_even_if_all_looks_up():
    """A frozen node ends no session: only the edge's live set says it is gone (lib/moves.NodeWatch)."""
    class Nodes:
        live = None

    now, nodes = [0.0], Nodes()
    sockets, queue = FakeSockets(3), FakeQueue()
    moves = Moves(sockets=sockets, queue=queue, nodes=nodes, clock=lambda: now[0], every=0.5, hold=3.0)
    keys = [KEY, ("demo", "api")]
    moves.follow(keys)                                   # nothing known yet
    nodes.live = frozenset({"node1", "node2", "node3"})
    moves.follow(keys)
    nodes.live = frozenset({"node1", "node2", "node3", "node4"})
    moves.follow(keys)                                   # a node joining moves nothing
    assert queue.added == []
    nodes.live = frozenset({"node1", "node3", "node4"})
    moves.follow(keys)
    assert queue.added == [(KEY, 0.0), (("demo", "api"), 0.0)]
    looks = 0
    while moves.due(KEY):
        looks += 1
        moves.settle(KEY, lambda: True)                  # its sessions look up (the frozen node's too)
        now[0] += 0.5
    assert looks == 7 and now[0] == 3.5                  # every half second through the hold
    moves.follow(keys)
    assert not moves.due(KEY)                            # once per departure
