"""lib.ownership: whose a socket is, from its own name. A table, no cluster needed."""

import pytest

from lib.ownership import Owner, Ownership, route_socket_name, socket_name

C = "3f6c2f0e-0000-4000-8000-000000000001"


def sock(name, socket_id="s1"):
    return {"socket_id": socket_id, "name": name}


@pytest.mark.parametrize("name, ownership, owner", [
    (f"mysocketd/{C}/demo/web", Ownership(C), Owner("demo", "web", "name")),
    ("mysocketd/another-cluster/demo/web", Ownership(C), None),
    (f"mysocketd/{C}/demo", Ownership(C), None),
    (f"mysocketd/{C}/demo/web/extra", Ownership(C), None),
    (f"mysocketd/{C}//web", Ownership(C), None),
    (f"k8s/{C}/demo/web", Ownership(C), None),                 # the previous release's name, not inherited
    ("k8s/default/demo/web", Ownership(C), None),
    ("k8s/default/demo/web", Ownership(C, inherited={"s1": ("demo", "web")}), Owner("demo", "web", "inherited")),
    ("k8s/default/demo/web", Ownership(C, inherited={"s1": ("demo", "api")}), None),   # the id, not the name
    ("k8s/default/demo/web", Ownership(C, inherited={"s2": ("demo", "web")}), None),
    ("k8s demo.web", Ownership(C), None),                       # the original controller's: only when migrating
    ("k8s demo.web", Ownership(C, adopt_original=True), Owner("demo", "web", "original")),
    ("k8s demo", Ownership(C, adopt_original=True), None),
    ("my laptop", Ownership(C, adopt_original=True), None),
    ("", Ownership(C), None),
])
def test_owner_comes_from_the_socket_itself(name, ownership, owner):
    assert ownership.owner(sock(name)) == owner


def test_a_socket_is_for_one_service_only():
    mine = sock(socket_name(C, "demo", "web"))
    assert Ownership(C).is_for(mine, ("demo", "web"))
    assert not Ownership(C).is_for(mine, ("other", "web"))
    assert not Ownership(C).is_for(mine, ("demo", "web-copy"))
    assert not Ownership("another").is_for(mine, ("demo", "web"))


@pytest.mark.parametrize("cluster", ["", "a/b"])
def test_an_identity_must_fit_in_a_name(cluster):
    with pytest.raises(ValueError):
        Ownership(cluster)


@pytest.mark.parametrize("name, owner", [
    (f"mysocketd/{C}/gateway/infra/same-namespace", ("gateway", "infra", "same-namespace")),
    (f"mysocketd/{C}/ingress/shop/web", ("ingress", "shop", "web")),
    ("mysocketd/another-cluster/gateway/infra/gw", None),
    (f"mysocketd/{C}/service/infra/gw", None),
    (f"mysocketd/{C}/gateway/infra", None),
    (f"mysocketd/{C}/gateway//gw", None),
    ("mysocketd-pool/shop", None),
])
def test_route_sockets_are_gateways_and_ingresses_and_never_a_services(name, owner):
    assert Ownership(C).route_owner(sock(name)) == owner
    if owner:
        assert Ownership(C).owner(sock(name)) is None   # the Service sweep never takes one for a leftover


def test_route_socket_names():
    assert route_socket_name(C, "gateway", "infra", "gw") == f"mysocketd/{C}/gateway/infra/gw"
    with pytest.raises(ValueError):
        route_socket_name(C, "service", "infra", "gw")
