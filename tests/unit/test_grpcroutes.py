"""Table tests for GRPCRoute translation (lib/grpcroutes.py, with lib/httproutes.py and lib/gatewayapi.py):
attachment, method matches as paths, the spec's gRPC precedence, backends that speak h2c, ReferenceGrants
from GRPCRoutes, filters a GRPCRoute may and may not have, statuses."""

import pytest

from lib import gatewayapi, gateways, grpcroutes, routetable
from lib.gatewayapi import World

GROUP = "gateway.networking.k8s.io"
ECHO = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"
NOW = "2026-01-01T00:00:00Z"


def gateway(listeners=None):
    return {"metadata": {"namespace": "infra", "name": "gw", "generation": 2},
            "spec": {"gatewayClassName": "mysocket", "listeners": listeners or [
                {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}


def grpc_route(rules, name="g", ns="infra", created=NOW, **spec):
    return {"metadata": {"namespace": ns, "name": name, "generation": 1, "creationTimestamp": created},
            "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}], "rules": rules, **spec}}


def http_route(rules, name="h"):
    return {"metadata": {"namespace": "infra", "name": name, "generation": 1, "creationTimestamp": NOW},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": rules}}


def service(name, ns="infra", annotations=None, **port):
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations or {}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9", "ports": [{"port": 8080, **port}]}}


SERVICES = {("infra", "v1"): service("v1", appProtocol="kubernetes.io/h2c"), ("infra", "v2"): service("v2"),
            ("infra", "web"): service("web"), ("other", "far"): service("far", ns="other")}


def translate(grpc=(), http=(), gws=None, services=None, grants=()):
    return gatewayapi.translate(World(
        classes=[{"metadata": {"name": "mysocket", "generation": 1},
                  "spec": {"controllerName": gateways.CONTROLLER_NAME}}],
        gateways=gws or [gateway()], http_routes=list(http), grpc_routes=list(grpc), grants=list(grants),
        services=services or SERVICES, namespace_labels={"infra": {}, "other": {}}))


def backend(name, **extra):
    return {"name": name, "port": 8080, **extra}


def method(service=None, name=None, type_=None):
    out = {k: v for k, v in (("service", service), ("method", name), ("type", type_)) if v is not None}
    return {"method": out}


def conditions(picture, key=("infra", "g")):
    status = gatewayapi.route_status(picture.grpc_routes[key], NOW)
    return {c["type"]: (c["status"], c["reason"]) for c in status["parents"][0]["conditions"]}


# --- matches ------------------------------------------------------------------------

@pytest.mark.parametrize("spec, path_type, path", [
    (method(ECHO, "Echo"), "Exact", f"/{ECHO}/Echo"),
    (method(ECHO), "RegularExpression", r"/gateway_api_conformance\.echo_basic\.grpcecho\.GrpcEcho/[^/]+"),
    (method(name="Echo"), "RegularExpression", "/[^/]+/Echo"),
    (method("echo\\..*", "Ec+ho", "RegularExpression"), "RegularExpression", "/(?:echo\\..*)/(?:Ec+ho)"),
    (method(name="Echo.*", type_="RegularExpression"), "RegularExpression", "/(?:[^/]+)/(?:Echo.*)"),
    ({}, "PathPrefix", "/"),
])
def test_a_method_match_is_a_path_match(spec, path_type, path):
    m = grpcroutes.match(spec)
    assert (m.path_type, m.path) == (path_type, path)
    assert m.headers == (grpcroutes.GRPC_CONTENT_TYPE,)          # gRPC requests only: HTTPRoutes keep the rest


def test_header_matches_are_kept_and_a_content_type_match_of_the_route_wins():
    m = grpcroutes.match({"headers": [{"name": "version", "value": "two"},
                                      {"name": "Content-Type", "value": "application/grpc+json"}]})
    assert m.headers == (routetable.ValueMatch("version", "two"),
                         routetable.ValueMatch("Content-Type", "application/grpc+json"))


def entries_of(picture):
    [lis] = picture.gateways[("infra", "gw")].listeners
    return lis.entries


def test_precedence_most_service_then_method_characters_then_headers_then_rule_order():
    rules = [
        {"matches": [{}], "backendRefs": [backend("v2")]},                                     # 0: catch-all
        {"matches": [method(name="Echo")], "backendRefs": [backend("v2")]},                    # 1: method only
        {"matches": [method(ECHO)], "backendRefs": [backend("v2")]},                            # 2: service only
        {"matches": [method(ECHO, "Echo")], "backendRefs": [backend("v1")]},                    # 3: both
        {"matches": [{"headers": [{"name": "version", "value": "two"}]}], "backendRefs": [backend("v2")]},  # 4
        {"matches": [{"headers": [{"name": "version", "value": "two"}, {"name": "color", "value": "orange"}]}],
         "backendRefs": [backend("v1")]},                                                       # 5: two headers
        {"matches": [{"headers": [{"name": "color", "value": "blue"}]}], "backendRefs": [backend("v1")]},  # 6
    ]
    order = [e.origin.rule for e in entries_of(translate([grpc_route(rules)]))]
    assert order == [3, 2, 1, 5, 4, 6, 0]


def test_an_older_route_wins_a_tie():
    older = grpc_route([{"matches": [method(ECHO, "Echo")], "backendRefs": [backend("v1")]}], name="z",
                       created="2025-01-01T00:00:00Z")
    newer = grpc_route([{"matches": [method(ECHO, "Echo")], "backendRefs": [backend("v2")]}], name="a")
    assert [e.origin.route for e in entries_of(translate([newer, older]))] == ["infra/z", "infra/a"]


# --- the table and its backends' protocol ---------------------------------------------

def table(picture):
    return picture.gateways[("infra", "gw")].table


def test_grpc_backends_speak_h2c_and_the_table_says_so():
    rules = [{"matches": [method(ECHO, "Echo")], "backendRefs": [backend("v1", weight=70), backend("v2", weight=30),
                                                                   backend("missing", weight=0)]}]
    picture = translate([grpc_route(rules)])
    out = table(picture)
    assert out["upstream_protocols"] == {"infra/v1:8080": "h2c", "infra/v2:8080": "h2c"}   # v2: no appProtocol
    [action] = out["actions"]
    assert [(b["backend"], b["weight"]) for b in action["backends"]] == [
        ("infra/v1:8080", 70), ("infra/v2:8080", 30), ("", 0)]
    [entry] = out["listeners"][0]["routes"]
    assert entry["match"]["path"] == {"type": "Exact", "value": f"/{ECHO}/Echo"}
    assert conditions(picture)["ResolvedRefs"] == ("False", "BackendNotFound")


def test_an_http_route_to_an_h2c_port_is_reached_over_h2c_and_other_tables_are_unchanged():
    picture = translate(http=[http_route([{"backendRefs": [backend("v1")]}, {"backendRefs": [backend("web")]}])])
    assert table(picture)["upstream_protocols"] == {"infra/v1:8080": "h2c"}
    assert picture.routes[("infra", "h")].rules.resolved_refs.status
    plain = translate(http=[http_route([{"backendRefs": [backend("web")]}])])
    assert "upstream_protocols" not in table(plain)        # the JSON older edges took, digest and all


@pytest.mark.parametrize("svc, protocol, reason", [
    (service("s", annotations={"mysocket.io/upstream-protocol": "http/1.1"}), None, "ResolvedRefs"),
    (service("s", annotations={"mysocket.io/upstream-protocol": "h2c"}, appProtocol="http"), None,
     "UnsupportedProtocol"),
    (service("s", appProtocol="kubernetes.io/ws"), None, "UnsupportedProtocol"),
    (service("s", annotations={"mysocket.io/upstream-protocol": "grpc"}), None, "UnsupportedProtocol"),
    (service("s", appProtocol="kubernetes.io/h2c"), "h2c", "ResolvedRefs"),
])
def test_what_a_grpc_backend_speaks(svc, protocol, reason):
    picture = translate([grpc_route([{"backendRefs": [backend("s")]}])], services={("infra", "s"): svc})
    assert table(picture).get("upstream_protocols", {}).get("infra/s:8080") == protocol
    assert conditions(picture)["ResolvedRefs"][1] == reason


def test_the_annotation_makes_an_http_routes_backend_h2c():
    svc = service("s", annotations={"mysocket.io/upstream-protocol": "h2c"})
    picture = translate(http=[http_route([{"backendRefs": [backend("s")]}])], services={("infra", "s"): svc})
    assert table(picture)["upstream_protocols"] == {"infra/s:8080": "h2c"}


def test_a_reference_grant_must_name_grpcroute():
    rules = [{"backendRefs": [backend("far", namespace="other")]}]

    def grant(kind):
        return {"metadata": {"namespace": "other"}, "spec": {
            "from": [{"group": GROUP, "kind": kind, "namespace": "infra"}],
            "to": [{"group": "", "kind": "Service"}]}}
    assert conditions(translate([grpc_route(rules)], grants=[grant("HTTPRoute")]))["ResolvedRefs"] == (
        "False", "RefNotPermitted")
    assert conditions(translate([grpc_route(rules)], grants=[grant("GRPCRoute")]))["ResolvedRefs"] == (
        "True", "ResolvedRefs")


# --- attachment, filters, statuses ---------------------------------------------------------

def test_grpc_routes_attach_to_http_listeners_unless_their_kinds_exclude_them():
    picture = translate([grpc_route([{"backendRefs": [backend("v1")]}])])
    assert conditions(picture) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert picture.gateways[("infra", "gw")].attached == {"http": 1}
    only_http = gateway([{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {
        "namespaces": {"from": "Same"}, "kinds": [{"kind": "HTTPRoute"}]}}])
    picture = translate([grpc_route([{"backendRefs": [backend("v1")]}])], gws=[only_http])
    assert conditions(picture)["Accepted"] == ("False", "NotAllowedByListeners")
    tls = gateway([{"name": "tls", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"}}])
    assert conditions(translate([grpc_route([])], gws=[tls]))["Accepted"] == ("False", "NotAllowedByListeners")


def test_listener_hostnames_narrow_a_grpc_routes():
    gw = gateway([{"name": n, "port": 80, "protocol": "HTTP", "hostname": h}
                  for n, h in (("a", "bar.com"), ("b", "*.foo.com"))])
    route_ = grpc_route([{"backendRefs": [backend("v1")]}], hostnames=["x.foo.com", "other.org"])
    picture = translate([route_], gws=[gw])
    assert picture.gateways[("infra", "gw")].attached == {"a": 0, "b": 1}
    [_, b] = table(picture)["listeners"]
    assert [r["hostname"] for r in b["routes"]] == ["x.foo.com"]


def test_header_filters_are_kept_and_redirects_drop_the_rule():
    header = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]}}
    redirect = {"type": "RequestRedirect", "requestRedirect": {"hostname": "elsewhere"}}
    rules = [{"filters": [header], "backendRefs": [backend("v1")]},
             {"filters": [redirect], "backendRefs": [backend("v2")]}]
    picture = translate([grpc_route(rules)])
    status = gatewayapi.route_status(picture.grpc_routes[("infra", "g")], NOW)
    conds = {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["parents"][0]["conditions"]}
    assert conds["PartiallyInvalid"][:2] == ("True", "UnsupportedValue")
    assert "rule 1: filter RequestRedirect" in conds["PartiallyInvalid"][2]
    [action] = table(picture)["actions"]
    assert action["filters"] == [{"type": "RequestHeaderModifier", "set": [{"name": "x-a", "value": "1"}],
                                  "add": [], "remove": []}]
    alone = translate([grpc_route([{"filters": [redirect], "backendRefs": [backend("v2")]}])])
    assert conditions(alone)["Accepted"] == ("False", "UnsupportedValue")


def test_the_class_says_grpcroute_is_supported():
    klass = {"metadata": {"name": "mysocket", "generation": 1}, "spec": {}}
    from lib.conditions import Condition
    status = gatewayapi.class_status(klass, Condition("Accepted", True, "Accepted"), NOW)
    assert {"name": "GRPCRoute"} in status["supportedFeatures"]
