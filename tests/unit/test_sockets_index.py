"""lib.sockets: a Service's socket is found through an index of what names claim, with the same answer
as a look at every socket, before and after the controller's own creates and deletes."""

import itertools

from lib.ownership import Ownership, pool_socket_name, socket_name
from lib.sockets import Sockets

CLUSTER = "c1"


class Api:
    def __init__(self, sockets):
        self.by_id = {s["socket_id"]: dict(s, tunnels=[]) for s in sockets}
        self.ids = itertools.count(1000)
        self.lists = 0

    def sockets(self):
        self.lists += 1
        return [dict(s) for s in self.by_id.values()]

    def connect(self, fields, before_send=None):
        socket = {**fields, "socket_id": f"s{next(self.ids)}", "tunnels": []}
        self.by_id[socket["socket_id"]] = socket
        return dict(socket)

    def delete_socket(self, socket_id, before_send=None):
        return self.by_id.pop(socket_id, None) is not None


def account():
    sockets = [{"socket_id": f"s{i}", "name": socket_name(CLUSTER, "ns", f"svc{i}")} for i in range(300)]
    sockets += [
        {"socket_id": "other", "name": socket_name("c2", "ns", "svc1")},        # another cluster's, same Service
        {"socket_id": "old", "name": "k8s/default/ns/legacy"},                  # inherited below
        {"socket_id": "old2", "name": "k8s/default/ns/svc2"},                   # not inherited: never ours
        {"socket_id": "orig", "name": "k8s ns.original"},
        {"socket_id": "p1", "name": pool_socket_name("shop")},
        {"socket_id": "gw", "name": f"mysocketd/{CLUSTER}/gateway/ns/gw"},
        {"socket_id": "dup", "name": socket_name(CLUSTER, "ns", "svc7")},       # a duplicate: the lower id wins
        {"socket_id": "noname"},
    ]
    return sockets


def every_socket(sockets, key):
    """What find() answered before the index: a look at every socket."""
    mine = sorted((s for s in sockets.snapshot().values() if sockets.ownership.is_for(s, key)),
                  key=lambda s: s["socket_id"])
    return mine[0]["socket_id"] if mine else None


def test_the_index_answers_as_a_look_at_every_socket_does():
    api = Api(account())
    ownership = Ownership(CLUSTER, inherited={"old": ("ns", "legacy")}, adopt_original=True)
    sockets = Sockets(api, ownership)
    keys = [("ns", f"svc{i}") for i in range(0, 300, 7)] + [("ns", "legacy"), ("ns", "original"), ("ns", "none")]
    for key in keys:
        found = sockets.find(key)
        assert (found.socket or {}).get("socket_id") == every_socket(sockets, key), key
    assert sockets.find(("ns", "legacy")).how == "inherited"
    assert sockets.find(("ns", "original")).how == "original"
    assert sockets.find(("ns", "svc2")).socket["socket_id"] == "s2"
    assert sockets.find(("ns", "svc7")).socket["socket_id"] == "dup"             # "dup" < "s7"
    assert sockets.find(("x", "y"), pool="shop").socket["socket_id"] == "p1"
    assert api.lists == 1


def test_the_index_follows_the_controllers_own_creates_and_deletes():
    api = Api(account())
    sockets = Sockets(api, Ownership(CLUSTER))
    assert sockets.find(("ns", "new")).socket is None                           # the index is built
    made = sockets.create({"name": socket_name(CLUSTER, "ns", "new"), "socket_type": "http"}, f"{CLUSTER}/r")
    assert sockets.find(("ns", "new")).socket["socket_id"] == made["socket_id"]
    sockets.delete(sockets.find(("ns", "svc3")).socket)
    assert sockets.find(("ns", "svc3")).socket is None
    sockets.delete(made)
    assert sockets.find(("ns", "new")).socket is None
    assert api.lists == 1
