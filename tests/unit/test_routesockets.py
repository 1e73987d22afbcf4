"""Table tests for lib/routesockets: which socket each Gateway/Ingress wants, where backends forward, tunnels."""

import pytest

from lib import gatewayapi, gateways, routesockets
from lib.httproutes import Target
from lib.replicas import TunnelOwner
from lib.routesockets import Forward, TunnelTag

C = "3f6c2f0e-0000-4000-8000-000000000001"


def gateway(name="gw", annotations=None):
    return {"metadata": {"namespace": "infra", "name": name, "generation": 1, "annotations": annotations or {}},
            "spec": {"gatewayClassName": "mysocket", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}


def picture(gws):
    klass = {"metadata": {"name": "mysocket"}, "spec": {"controllerName": gateways.CONTROLLER_NAME}}
    return gatewayapi.translate(gatewayapi.World(classes=[klass], gateways=gws))


def test_wanted_sockets_own_or_pooled():
    gws = [gateway("a"), gateway("b", {"mysocket.io/pool": "shop"}),
           {**gateway("bad"), "spec": {"gatewayClassName": "mysocket", "listeners": [
               {"name": "x", "port": 1, "protocol": "UDP"}]}}]
    wanted = routesockets.wanted(C, picture(gws), gws, [], [])
    assert set(wanted) == {("gateway", "infra", "a"), ("gateway", "infra", "b")}     # not an unaccepted one
    a, b = wanted[("gateway", "infra", "a")], wanted[("gateway", "infra", "b")]
    assert a.socket_name == f"mysocketd/{C}/gateway/infra/a" and a.pool == ""
    assert b.socket_name == "mysocketd-pool/shop" and b.pool == "shop"
    assert a.digest == routesockets.digest(a.table) and len(a.digest) == 64
    fields = routesockets.socket_fields(a)
    assert (fields["name"], fields["socket_type"], fields["own_address"], fields["unique_name"]) == (
        a.socket_name, "http", True, True)


def test_digest_is_the_edges():
    from edge import routetables            # the tests may import both sides: lib and edge never import each other
    table = {"listeners": [{"name": "é", "routes": []}], "actions": []}
    assert routesockets.digest(table) == routetables.digest(table)


def test_addresses_own_first():
    assert routesockets.addresses({"address": "127.100.0.3", "dnsname": "a.edge.localhost"}) == (
        {"type": "IPAddress", "value": "127.100.0.3"}, {"type": "Hostname", "value": "a.edge.localhost"})
    assert routesockets.addresses({"address": "", "dnsname": "a.edge.localhost"}) == (
        {"type": "Hostname", "value": "a.edge.localhost"},)


@pytest.mark.parametrize("tag", [
    TunnelTag(C, "pod-a-1f2e3d", "infra/svc:8080"),
    TunnelTag(C, "pod-a-1f2e3d", "infra/headless:8080", "10.244.0.7"),
])
def test_tags_round_trip_and_are_never_a_services(tag):
    assert TunnelTag.parse(tag.tag) == tag
    assert TunnelOwner.parse(tag.tag) is None
    assert len(tag.tag) < 256


@pytest.mark.parametrize("tag", [f"{C}/infra/web/pod-a", f"{C}/route/pod-a", "", None, f"{C}/route//infra/x:1"])
def test_other_tags_are_not_route_tags(tag):
    assert TunnelTag.parse(tag) is None


def service(cluster_ip="10.96.0.9", ports=((8080, "first-port"),)):
    return {"metadata": {"namespace": "infra", "name": "svc"},
            "spec": {"clusterIP": cluster_ip, "ports": [{"port": p, "name": n} for p, n in ports]}}


def eps(ready_ips, port=3000, name="first-port", not_ready=(), family="IPv4"):
    return {"addressType": family, "ports": [{"name": name, "port": port}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ready_ips]
            + [{"addresses": [ip], "conditions": {"ready": False}} for ip in not_ready]}


T = Target("infra", "svc", 8080)


@pytest.mark.parametrize("svc, slices, expected", [
    (service(), [], [Forward("infra/svc:8080", "10.96.0.9", 8080)]),
    (service(), [eps(["10.244.0.3"])], [Forward("infra/svc:8080", "10.96.0.9", 8080)]),   # ClusterIP wins
    (service("None"), [eps(["10.244.0.4", "10.244.0.3"], not_ready=["10.244.0.9"]), eps(["fd00::1"], family="IPv6")],
     [Forward("infra/svc:8080", "10.244.0.3", 3000, "10.244.0.3"),
      Forward("infra/svc:8080", "10.244.0.4", 3000, "10.244.0.4")]),
    (service("None"), [eps(["10.244.0.3"], name="other")], []),
    (service("None"), [], []),
    (service(ports=((9090, "x"),)), [], []),
    (None, [], []),
])
def test_forward_targets(svc, slices, expected):
    assert routesockets.forward_targets(T, svc, slices) == expected


def test_tunnel_changes_only_this_replicas():
    keep = Forward("infra/svc:8080", "10.96.0.9", 8080)
    new = Forward("infra/v2:8080", "10.96.0.8", 8080)
    socket = {"tunnels": [
        {"tunnel_id": "t1", "owner": TunnelTag(C, "me", "infra/svc:8080").tag},
        {"tunnel_id": "t2", "owner": TunnelTag(C, "me", "infra/old:8080").tag},
        {"tunnel_id": "t3", "owner": TunnelTag(C, "other", "infra/v2:8080").tag},
        {"tunnel_id": "t4", "owner": TunnelTag("another-cluster", "me", "infra/v2:8080").tag},
        {"tunnel_id": "t5", "owner": f"{C}/infra/web/me"},
    ]}
    missing, extra = routesockets.tunnel_changes(socket, [keep, new], C, "me")
    assert missing == [new]
    assert [t["tunnel_id"] for t in extra] == ["t2"]
    assert routesockets.own_tunnel(socket, keep, C, "me")["tunnel_id"] == "t1"


def test_every_service_a_route_or_an_ingress_names_is_watched_for():
    from lib.routecontroller import named_services
    objects = {
        "HTTPRoute": [{"metadata": {"namespace": "a"}, "spec": {"rules": [
            {"backendRefs": [{"name": "web", "port": 80}, {"name": "far", "namespace": "b", "port": 80},
                             {"name": "bucket", "group": "storage.example", "kind": "Bucket"}]}]}}],
        "Ingress": [{"metadata": {"namespace": "c"}, "spec": {
            "defaultBackend": {"service": {"name": "default", "port": {"number": 80}}},
            "rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "api"}}},
                                          {"path": "/r", "backend": {"resource": {"kind": "Bucket"}}}]}}]}}]}
    assert named_services(objects) == {("a", "web"), ("b", "far"), ("c", "default"), ("c", "api")}
