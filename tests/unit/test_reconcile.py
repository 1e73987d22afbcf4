"""The reconcile's decisions with fake collaborators, counting every remote call (as client-go's
leaderelection_test.go counts API calls): each case fails on a wrong call or a wrong number of them."""

import copy
import itertools
import threading
import time

import pytest

from lib.controller import SWEEP, Controller
from lib.leader import Fenced
from lib.ownership import Ownership, socket_name
from lib.remote import Pending, Remote
from lib.replicas import Liveness
from lib.services import DNSNAME, FINALIZER, LAST_VALID, SOCKET_ID, TUNNEL_ID
from lib.sockets import Sockets
from lib.sweep import Sweep
from lib.workqueue import WorkQueue

CLUSTER = "c1"
KEY = ("demo", "web")


def _sent(before_send):
    """As lib/mysocket.py does before every attempt of a write."""
    if before_send is not None:
        before_send()


class FakeApi:
    """The Mysocket API: an account's sockets in memory, every call recorded."""

    def __init__(self, sockets=()):
        self.sockets_by_id = {s["socket_id"]: s for s in sockets}
        self.calls = []
        self.ids = itertools.count(1)

    def sockets(self):
        self.calls.append("list")
        return copy.deepcopy(list(self.sockets_by_id.values()))

    def create_socket(self, fields, before_send=None):
        _sent(before_send)
        self.calls.append("create_socket")
        n = next(self.ids)
        socket = {**fields, "socket_id": f"s{n}", "dnsname": f"name-{n}.edge", "tunnels": []}
        self.sockets_by_id[socket["socket_id"]] = socket
        return copy.deepcopy(socket)

    def connect(self, fields, before_send=None):
        _sent(before_send)
        self.calls.append(f"connect {fields['tunnel_owner']}")
        n = next(self.ids)
        socket = {**fields, "socket_id": f"s{n}", "dnsname": f"name-{n}.edge",
                  "tunnels": [{"tunnel_id": f"t{n}", "local_port": 10000 + n, "owner": fields["tunnel_owner"]}]}
        self.sockets_by_id[socket["socket_id"]] = socket
        return copy.deepcopy(socket)

    def create_tunnel(self, socket_id, owner=None):
        self.calls.append(f"create_tunnel {owner}")
        n = next(self.ids)
        tunnel = {"tunnel_id": f"t{n}", "local_port": 10000 + n, "owner": owner or ""}
        self.sockets_by_id[socket_id]["tunnels"].append(tunnel)
        return dict(tunnel)

    def delete_tunnel(self, socket_id, tunnel_id, before_send=None):
        _sent(before_send)
        self.calls.append(f"delete_tunnel {tunnel_id}")

    def update_socket(self, socket_id, fields, before_send=None):
        _sent(before_send)
        self.calls.append(f"update_socket {sorted(fields.items())}")
        self.sockets_by_id[socket_id].update(fields)
        return copy.deepcopy(self.sockets_by_id[socket_id])

    def delete_socket(self, socket_id, before_send=None):
        _sent(before_send)
        self.calls.append(f"delete {socket_id}")
        return self.sockets_by_id.pop(socket_id, None) is not None

    def remote_calls(self):
        return [c for c in self.calls if c != "list"]


class FakeKube:
    """The apiserver as the controller writes it; patched Services go back into the watcher."""

    namespace = "demo"

    def __init__(self, watcher):
        self.watcher = watcher
        self.calls = []
        self.events = []

    def patch_metadata(self, svc, annotations=None, add_finalizer=None, remove_finalizer=None):
        self.calls.append(("patch", tuple(sorted(annotations or {})), add_finalizer, remove_finalizer))
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        new = copy.deepcopy(self.watcher.get(key))
        meta = new["metadata"]
        for k, v in (annotations or {}).items():
            if v is None:
                meta.setdefault("annotations", {}).pop(k, None)
            else:
                meta.setdefault("annotations", {})[k] = v
        finalizers = set(meta.get("finalizers") or [])
        finalizers |= {add_finalizer} if add_finalizer else set()
        finalizers -= {remove_finalizer} if remove_finalizer else set()
        meta["finalizers"] = sorted(finalizers)
        self.watcher.cache[key] = new
        return new

    def set_load_balancer_hostname(self, svc, hostname):
        self.calls.append(("status", hostname))

    def set_condition(self, svc, kind, ok, reason, message):
        self.calls.append(("condition", reason))

    def secret(self, namespace, name):
        self.calls.append(("secret", name))
        return None

    def event(self, svc, kind, reason, message):
        self.events.append((kind, reason))

    def forget_events(self, uid):
        pass


class FakeWatcher:
    def __init__(self):
        self.cache = {}

    def get(self, key):
        return self.cache.get(key)

    def keys(self):
        return list(self.cache)


class FakeSupervisor:
    def __init__(self):
        self.forwards = {}
        self.calls = []

    def ensure(self, key, spec):
        if self.forwards.get(key) != spec:
            self.calls.append(("ensure", spec.local_port, spec.target_port))
        self.forwards[key] = spec

    def remove(self, key):
        if self.forwards.pop(key, None):
            self.calls.append(("remove",))

    def stop_all(self):
        self.forwards.clear()


class Fence:
    def __init__(self):
        self.open = True

    def is_open(self):
        return self.open

    def check(self):
        if not self.open:
            raise Fenced("not leading")


def service(annotations=None, finalizers=()):
    return {"metadata": {"namespace": "demo", "name": "web", "uid": "u1", "annotations": dict(annotations or {}),
                         "finalizers": list(finalizers)},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                     "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]}}


@pytest.fixture
def world():
    class World:
        def make(self, sockets=(), svc=None, remote=None):
            self.api = FakeApi(sockets)
            self.watcher = FakeWatcher()
            if svc is not None:
                self.watcher.cache[KEY] = svc
            self.kube = FakeKube(self.watcher)
            self.supervisor = FakeSupervisor()
            self.fence = Fence()
            self.queue = WorkQueue()
            the_sockets = Sockets(self.api, Ownership(CLUSTER), self.fence, remote)
            self.controller = Controller(kube=self.kube, sockets=the_sockets,
                                         supervisor=self.supervisor, watcher=self.watcher, queue=self.queue,
                                         user_name="u", fence=self.fence)
            return self.controller

        def calls(self):
            return self.api.remote_calls() + self.kube.calls + self.supervisor.calls

        def reset(self):
            self.api.calls.clear()
            self.kube.calls.clear()
            self.supervisor.calls.clear()

    return World()


ON = {"mysocket.io/enabled": "true"}


MINE = f"{CLUSTER}/demo/web/single"          # this replica's tunnel tag (lib/replicas.TunnelOwner)


def test_a_new_service_is_one_create_with_its_tunnel_two_patches_one_child_and_a_second_run_makes_no_call(world):
    c = world.make(svc=service(ON))
    c.reconcile(KEY)
    assert world.api.calls == ["list", f"connect {MINE}"]
    assert world.kube.calls == [("patch", (), FINALIZER, None),
                                ("patch", (DNSNAME, LAST_VALID, SOCKET_ID), None, None)]
    assert world.supervisor.calls == [("ensure", 10001, 8000)]
    world.reset()
    c.reconcile(KEY)
    assert world.calls() == [] and world.api.calls == []


def test_a_restart_finds_its_socket_and_its_own_tunnel_with_one_list_and_nothing_else(world):
    mine = {"socket_id": "s9", "name": socket_name(CLUSTER, "demo", "web"), "dnsname": "kept.edge",
            "socket_type": "http",
            "tunnels": [{"tunnel_id": "t8", "local_port": 10008, "owner": f"{CLUSTER}/demo/web/other"},
                        {"tunnel_id": "t9", "local_port": 10009, "owner": MINE}]}
    recorded = {**ON, DNSNAME: "kept.edge", SOCKET_ID: "s9", LAST_VALID: "{}"}
    c = world.make(sockets=[mine], svc=service(recorded, finalizers=[FINALIZER]))
    c.reconcile(KEY)
    assert world.api.calls == ["list"] and world.kube.calls == []
    assert world.supervisor.calls == [("ensure", 10009, 8000)]


def test_an_upgrade_keeps_the_socket_adds_this_replicas_tunnel_and_drops_the_single_tunnel_id(world):
    old = {"socket_id": "s9", "name": socket_name(CLUSTER, "demo", "web"), "dnsname": "kept.edge",
           "socket_type": "http", "tunnels": [{"tunnel_id": "t9", "local_port": 10009}]}
    recorded = {**ON, DNSNAME: "kept.edge", SOCKET_ID: "s9", TUNNEL_ID: "t9"}
    c = world.make(sockets=[old], svc=service(recorded, finalizers=[FINALIZER]))
    c.reconcile(KEY)
    assert world.api.calls == ["list", f"create_tunnel {MINE}"]
    assert world.kube.calls == [("patch", (LAST_VALID, TUNNEL_ID), None, None)]


def test_a_recorded_id_of_another_services_socket_is_never_touched(world):
    theirs = {"socket_id": "s7", "name": socket_name(CLUSTER, "other", "web"), "dnsname": "theirs.edge",
              "socket_type": "http", "tunnels": [{"tunnel_id": "t7", "local_port": 10007, "owner": ""}]}
    copied = {**ON, DNSNAME: "theirs.edge", SOCKET_ID: "s7"}
    c = world.make(sockets=[theirs], svc=service(copied, finalizers=[FINALIZER]))
    c.reconcile(KEY)
    assert world.api.calls == ["list", f"connect {MINE}"]              # its own; nothing deleted
    assert ("Warning", "SocketNotOwned") in world.kube.events
    assert c.records[KEY].socket_id == "s1"
    world.reset()
    del c.watcher.cache[KEY]["metadata"]["annotations"]["mysocket.io/enabled"]
    c.reconcile(KEY)                                                 # un-exposing deletes its own only
    assert world.api.calls == ["delete s1"]
    assert list(world.api.sockets_by_id) == ["s7"]


def test_a_replica_that_does_not_lead_follows_the_recorded_socket_and_writes_nothing(world):
    mine = {"socket_id": "s9", "name": socket_name(CLUSTER, "demo", "web"), "dnsname": "kept.edge",
            "socket_type": "http", "tunnels": []}
    c = world.make(sockets=[mine], svc=service({**ON, SOCKET_ID: "s9"}, finalizers=[FINALIZER]))
    world.fence.open = False
    c.reconcile(KEY)
    assert world.api.calls == ["list", f"create_tunnel {MINE}"]      # its own tunnel: no leadership needed
    assert world.kube.calls == [] and world.supervisor.calls == [("ensure", 10001, 8000)]


def test_a_replica_that_does_not_lead_waits_for_the_leader_and_never_follows_a_foreign_id(world):
    theirs = {"socket_id": "s7", "name": socket_name(CLUSTER, "other", "web"), "tunnels": []}
    c = world.make(sockets=[theirs], svc=service(ON))
    world.fence.open = False
    c.reconcile(KEY)                                                # nothing recorded yet
    assert world.calls() == []
    c.watcher.cache[KEY]["metadata"]["annotations"][SOCKET_ID] = "s7"   # a copied id
    c.reconcile(KEY)
    assert world.calls() == [] and KEY not in c.records


def test_taking_the_annotation_away_deletes_its_socket_and_lets_go(world):
    c = world.make(svc=service(ON))
    c.reconcile(KEY)
    world.reset()
    del c.watcher.cache[KEY]["metadata"]["annotations"]["mysocket.io/enabled"]
    c.reconcile(KEY)
    assert world.api.calls == ["delete s1"] and world.api.sockets_by_id == {}
    assert world.kube.calls == [("patch", (DNSNAME, LAST_VALID, SOCKET_ID), None, FINALIZER)]
    assert world.supervisor.calls == [("remove",)]
    world.reset()
    c.reconcile(KEY)
    assert world.calls() == [] and world.api.calls == []


def test_the_sweep_deletes_only_this_clusters_sockets_of_gone_services(world):
    gone = {"socket_id": "g", "name": socket_name(CLUSTER, "demo", "gone"), "tunnels": []}
    other_cluster = {"socket_id": "o", "name": socket_name("c2", "demo", "gone"), "tunnels": []}
    other_namespace = {"socket_id": "n", "name": socket_name(CLUSTER, "elsewhere", "gone"), "tunnels": []}
    laptop = {"socket_id": "l", "name": "my laptop", "tunnels": []}
    c = world.make(sockets=[gone, other_cluster, other_namespace, laptop], svc=service(ON))
    c.resync()
    assert world.api.calls == ["list", "delete g"]


def test_an_h2c_port_is_told_to_the_edge_in_place_once_and_an_edge_that_does_not_know_it_is_left_alone(world):
    """appProtocol kubernetes.io/h2c on the exposed port: a new socket says so; a socket the edge reports as
    http/1.1 is changed in place (one PATCH, the name stays); one whose edge reports no upstream_protocol at
    all (an edge older than the field) is never asked."""
    svc = service(ON)
    svc["spec"]["ports"][0]["appProtocol"] = "kubernetes.io/h2c"
    c = world.make(svc=copy.deepcopy(svc))
    c.reconcile(KEY)
    assert world.api.sockets_by_id["s1"]["upstream_protocol"] == "h2c"
    base = {"name": socket_name(CLUSTER, "demo", "web"), "dnsname": "kept.edge", "socket_type": "http",
            "tunnels": [{"tunnel_id": "t9", "local_port": 10009, "owner": MINE}]}
    recorded = {**ON, DNSNAME: "kept.edge", SOCKET_ID: "s9", LAST_VALID: "{}"}
    svc["metadata"]["annotations"] = recorded
    svc["metadata"]["finalizers"] = [FINALIZER]
    for reported, calls in (("http/1.1", ["list", "update_socket [('upstream_protocol', 'h2c')]"]),
                            (None, ["list"]), ("h2c", ["list"])):
        socket = {**base, "socket_id": "s9", **({"upstream_protocol": reported} if reported else {})}
        c = world.make(sockets=[socket], svc=copy.deepcopy(svc))
        c.reconcile(KEY)
        assert world.api.calls == calls, reported
        c.reconcile(KEY)                            # and once told, never again
        assert world.api.calls == calls, reported
    assert ("Normal", "UpstreamProtocolChanged") not in world.kube.events   # the last world: nothing changed


def test_a_single_node_edge_does_not_make_the_sweep_forget_a_service_that_wants_two_connections(world):
    """--edge-connections 2 (the default) on an edge of one node: one tunnel is all the edge can give, so
    the sweep keeps the record and says who serves it, instead of dropping it as 'fewer than it wants'
    on every run (then nothing ever wrote mysocket.io/served-by)."""
    c = world.make(svc=service(ON))
    c.serving.connections = 2
    world.api.edge_nodes = lambda: 1
    c.reconcile(KEY)
    assert len(c.records[KEY].tunnels) == 1
    for tunnel in world.api.sockets_by_id["s1"]["tunnels"]:
        tunnel["connected"] = True
    world.reset()
    c.resync()
    assert KEY in c.records
    c.reconcile(world.queue.get(timeout=0))     # the sweep queued it; its own reconcile writes the line
    assert [call for call in world.kube.calls if call[0] == "patch"] == [("patch", ("mysocket.io/served-by",),
                                                                         None, None)]



class GatedLiveness(Liveness):
    """lib.replicas.Liveness whose Lease list answers (none) only once the test opens the gate."""

    def __init__(self):
        super().__init__(rest=None, namespace="mysocket")
        self.gate = threading.Event()

    def list(self):
        self.gate.wait(5)
        return []


def test_a_sweep_cut_short_by_the_lease_list_takes_its_socket_list_on_its_way_instead_of_listing_again(world):
    """The Leases are listed off the loop after the sockets; a run that ended Pending on them used to ask
    for a new socket list on its next run: two lists a sweep, and creates on their way found by name."""
    c = world.make(svc=service(ON), remote=Remote(workers=2, budget=0.05))
    world.api.edge_nodes = lambda: 1
    c.remote.begin(KEY)
    c.reconcile(KEY)
    liveness = GatedLiveness()
    sweep = Sweep(c, liveness)
    world.api.calls.clear()
    c.remote.begin(SWEEP)
    with pytest.raises(Pending):
        sweep.run()
    assert world.api.calls.count("list") == 1
    liveness.gate.set()
    deadline = time.monotonic() + 5
    while SWEEP not in c.remote.collect() and time.monotonic() < deadline:
        time.sleep(0.01)
    c.remote.begin(SWEEP)
    sweep.run()
    assert world.api.calls.count("list") == 1 and liveness.leases(CLUSTER) == {} and liveness._listed


def test_the_sweep_writes_nothing_itself_and_each_service_writes_its_served_by_with_its_own_reconcile(world):
    """The sweep used to patch mysocket.io/served-by itself: with a budget of milliseconds the first patch
    still on its way ended the sweep, which started over on the next turn, one patch and one walk over
    every Service per turn (1,000 Services: the loop did little else for minutes). Now the sweep only
    works the line out and queues the Services whose annotation says otherwise; each one's reconcile
    writes it, and a second sweep with nothing new queues nothing and writes nothing."""
    c = world.make(svc=service(ON))
    world.api.edge_nodes = lambda: 1
    for name in ("a", "b", "c"):
        world.watcher.cache[("demo", name)] = {**service(ON), "metadata": {
            **service(ON)["metadata"], "name": name, "uid": f"u-{name}"}}
    keys = sorted(world.watcher.cache)
    for key in keys:
        c.reconcile(key)
    for socket in world.api.sockets_by_id.values():
        for tunnel in socket["tunnels"]:
            tunnel["connected"] = True
    world.reset()
    c.resync()
    assert [call for call in world.kube.calls if call[0] == "patch"] == []
    queued = set()
    while (key := world.queue.get(timeout=0)) is not None:
        queued.add(key)
        c.reconcile(key)
    assert queued == set(keys)
    assert [call for call in world.kube.calls if call[0] == "patch"] == [
        ("patch", ("mysocket.io/served-by",), None, None)] * len(keys)
    said = {k: world.watcher.cache[k]["metadata"]["annotations"]["mysocket.io/served-by"] for k in keys}
    assert set(said.values()) == {"1 tunnel connected; this cluster: 1 (single)"}
    world.reset()
    c.resync()
    assert world.queue.get(timeout=0) is None and world.kube.calls == []


def test_a_socket_made_while_a_list_is_on_its_way_is_neither_lost_nor_made_again(world):
    """A list begun before a create ends may come back without that socket: it stays in the snapshot
    (never "adopted by name" later, never created twice), and the create itself never waits for a list."""
    c = world.make(svc=service(ON))
    sockets = c.sockets
    listed = sockets.remote.shared("list sockets #0", sockets._list)       # begun before the create...
    sockets.invalidate()
    made = sockets.create({"name": socket_name(CLUSTER, "demo", "web"), "socket_type": "http"}, MINE)
    assert world.api.calls == ["list", f"connect {MINE}"]                   # the create listed nothing
    sockets._by_id = None
    sockets.remote.shared = lambda ident, fn: listed                        # ...and comes back without it
    assert sockets.find(KEY).socket["socket_id"] == made["socket_id"]
    assert sockets.find(KEY).how == "name"
    sockets.invalidate()
    del sockets.remote.shared                                               # a list begun after the create
    world.api.sockets_by_id.clear()                                         # says it is gone: it is gone
    assert sockets.find(KEY).socket is None


def test_a_create_whose_answer_comes_after_a_newer_list_showed_the_socket_is_said_created_not_adopted(world):
    """The create ends on its worker; before the loop takes its answer, a sweep's newer list already shows
    the socket, and the Service's next reconcile finds it by name. That socket is this controller's own:
    SocketCreated is said (once), never a SocketAdopted that says something false (at 1,000 Services 400
    to 800 of them got one)."""
    c = world.make(svc=service(ON, finalizers=[FINALIZER]))
    fields = {"name": socket_name(CLUSTER, "demo", "web"), "socket_type": "http", "tunnel_owner": MINE}
    c.sockets._made_by_edge(world.api.connect, fields)       # as the remote worker does; not taken yet
    c.sockets.invalidate()                                   # a sweep: a list begun after the create
    c.reconcile(KEY)
    assert [r for _, r in world.kube.events] == ["SocketCreated"]
    assert world.api.remote_calls() == [f"connect {MINE}"]   # the one create, nothing made twice
    del c.records[KEY]                                       # looked at again before its id is recorded
    c.watcher.cache[KEY]["metadata"]["annotations"].pop(SOCKET_ID)
    c.reconcile(KEY)
    assert [r for _, r in world.kube.events] == ["SocketCreated"]
