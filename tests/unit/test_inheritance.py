"""lib.inheritance.take_inventory: which previous-release sockets an upgrade inherits."""

from lib.inheritance import take_inventory, unclaimed
from lib.services import SOCKET_ID


def svc(ns, name, recorded=None):
    annotations = {SOCKET_ID: recorded} if recorded else {}
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations}}


SOCKETS = {
    "a": {"socket_id": "a", "name": "k8s/default/demo/web"},
    "b": {"socket_id": "b", "name": "k8s/default/demo/gone"},
    "c": {"socket_id": "c", "name": "mysocketd/x/demo/api"},
    "d": {"socket_id": "d", "name": "k8s/default/other/web"},
}


def test_only_sockets_recorded_by_the_service_their_name_claims_are_inherited():
    services = [
        svc("demo", "web", "a"),          # the previous release's own record: inherited
        svc("demo", "api", "c"),          # this release's name: not an inheritance
        svc("demo", "copy", "b"),         # a copy pointing at another Service's socket
        svc("elsewhere", "web", "d"),     # same name, another namespace than the socket claims
        svc("demo", "none"),
        svc("demo", "dangling", "zzz"),
    ]
    assert take_inventory(services, SOCKETS) == {"a": ("demo", "web")}


def test_the_previous_releases_sockets_not_inherited_are_listed():
    assert sorted(s["socket_id"] for s in unclaimed(SOCKETS, {"a": ("demo", "web")})) == ["b", "d"]
