"""Table tests for TCP listeners and TCPRoutes: accepted on a port the edge gives, one backend each, the oldest
route served, their sockets and statuses."""

import pytest
from test_gatewayapi import GROUP, SERVICES, gateway, gwclass, listener

from lib import gatewayapi, gateways, routesockets, tcproutes
from lib.gatewayapi import EdgeAnswer, World
from lib.ownership import Ownership

TCP = listener("db", 5432, "TCP")


def tcp_route(name="t", refs=None, created="2026-01-01T00:00:00Z", ns="infra", section=None):
    parent = {"name": "gw", "namespace": "infra", **({"sectionName": section} if section else {})}
    return {"metadata": {"namespace": ns, "name": name, "generation": 1, "creationTimestamp": created},
            "spec": {"parentRefs": [parent],
                     "rules": [{"backendRefs": refs if refs is not None else [{"name": "svc", "port": 8080}]}]}}


def translate(routes, listeners=(TCP,), grants=()):
    return gatewayapi.translate(World(classes=[gwclass()], gateways=[gateway(listeners=list(listeners))],
                                      tcp_routes=list(routes), grants=list(grants), services=SERVICES,
                                      namespace_labels={"infra": {}}))


def test_a_tcp_listener_is_accepted_on_the_edges_port_and_says_so():
    verdict = gateways.validate(gateway(listeners=[TCP]), {}, [])
    lis = verdict.listeners[0]
    assert (verdict.accepted.reason, lis.accepted.status, lis.accepted.reason) == ("Accepted", True, "Accepted")
    assert "port 5432 cannot be promised" in lis.accepted.message
    assert lis.kinds == (gateways.TCP_ROUTE,)


@pytest.mark.parametrize("listeners, conflicted", [
    ([TCP, listener("db2", 5432, "TCP")], "HostnameConflict"),     # the spec's rules, on the ports asked for
    ([listener("web", 80), listener("raw", 80, "TCP")], "ProtocolConflict"),
    ([TCP, listener("db2", 5433, "TCP")], None),
])
def test_tcp_listeners_conflict_by_the_ports_they_ask_for(listeners, conflicted):
    second = gateways.validate(gateway(listeners=listeners), {}, []).listeners[1]
    assert (second.conflicted.reason if second.conflicted.status else None) == conflicted


def test_a_tcp_route_becomes_its_listeners_socket_with_one_backend():
    picture = translate([tcp_route()], listeners=[listener(), TCP])
    plan = picture.gateways[("infra", "gw")]
    assert plan.attached == {"http": 0, "db": 1}
    assert [lis.name for lis in plan.listeners] == ["http"]             # not in the http socket's table
    assert plan.targets == frozenset()
    (db,) = plan.tcp
    assert (db.name, db.route, db.target.key) == ("db", ("infra", "t"), "infra/svc:8080")
    parent = picture.tcp_routes[("infra", "t")]
    status = gatewayapi.route_status(parent, now="2026-02-02T00:00:00Z")["parents"][0]
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]} == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    wanted = routesockets.wanted("c1", picture, [gateway(listeners=[listener(), TCP])], [], [])
    tcp = wanted[("gateway-tcp", "infra", "gw:db")]
    assert (tcp.socket_name, tcp.socket_type, tcp.table, {t.key for t in tcp.targets}) == (
        "mysocketd/c1/gateway-tcp/infra/gw:db", "tcp", None, {"infra/svc:8080"})
    fields = routesockets.socket_fields(tcp)
    assert (fields["socket_type"], fields["own_address"]) == ("tcp", False)
    assert Ownership("c1").route_owner({"name": tcp.socket_name}) == ("gateway-tcp", "infra", "gw:db")
    assert Ownership("c2").route_owner({"name": tcp.socket_name}) is None


@pytest.mark.parametrize("refs, accepted, target", [
    ([{"name": "svc", "port": 8080}, {"name": "v2", "port": 8080}], "UnsupportedValue", None),
    ([{"name": "svc", "port": 8080, "weight": 3}, {"name": "v2", "port": 8080, "weight": 0}], "Accepted",
     "infra/svc:8080"),
    ([{"name": "svc", "port": 8080, "weight": 0}], "Accepted", None),      # no traffic: every connection refused
    ([{"name": "missing", "port": 8080}], "Accepted", None),
])
def test_one_weighted_backend_per_rule(refs, accepted, target):
    picture = translate([tcp_route(refs=refs)])
    condition = picture.tcp_routes[("infra", "t")].rules.accepted_problem
    assert (condition.reason if condition else "Accepted") == accepted
    if condition:
        assert tcproutes.ONE_BACKEND in condition.message
    (db,) = picture.gateways[("infra", "gw")].tcp
    assert (db.target.key if db.target else None) == target


def test_several_routes_on_a_listener_are_all_attached_and_the_oldest_is_served():
    newer = tcp_route("a-newer", [{"name": "v2", "port": 8080}], created="2026-01-02T00:00:00Z")
    older = tcp_route("z-older", created="2026-01-01T00:00:00Z")
    picture = translate([newer, older])
    plan = picture.gateways[("infra", "gw")]
    assert plan.attached == {"db": 2}
    assert (plan.tcp[0].route, plan.tcp[0].target.key) == (("infra", "z-older"), "infra/svc:8080")
    assert all(v.parents[0].accepted.status for v in picture.tcp_routes.values())


def test_tcp_and_http_routes_keep_to_their_listeners():
    from test_gatewayapi import route
    picture = gatewayapi.translate(World(classes=[gwclass()], gateways=[gateway(listeners=[listener(), TCP])],
                                         http_routes=[route(parents=[{"name": "gw", "sectionName": "db"}])],
                                         tcp_routes=[tcp_route(section="http")], services=SERVICES,
                                         namespace_labels={"infra": {}}))
    assert picture.routes[("infra", "r")].parents[0].accepted.reason == "NotAllowedByListeners"
    assert picture.tcp_routes[("infra", "t")].parents[0].accepted.reason == "NotAllowedByListeners"


def test_a_tcp_routes_grant_names_tcproute():
    ref = [{"name": "web-backend", "namespace": "web", "port": 8080}]
    grant = {"metadata": {"namespace": "web"}, "spec": {"from": [{"group": GROUP, "kind": "TCPRoute",
                                                                  "namespace": "infra"}],
                                                        "to": [{"group": "", "kind": "Service"}]}}
    assert translate([tcp_route(refs=ref)]).tcp_routes[("infra", "t")].rules.resolved_refs.reason == "RefNotPermitted"
    granted = translate([tcp_route(refs=ref)], grants=[grant])
    assert granted.gateways[("infra", "gw")].tcp[0].target.key == "web/web-backend:8080"


def test_a_tcp_listeners_programmed_condition_names_the_edges_port():
    gw = gateway(listeners=[listener(), TCP])
    plan = translate([tcp_route()], listeners=[listener(), TCP]).gateways[("infra", "gw")]
    addresses = ({"type": "IPAddress", "value": "127.1.0.1"},)
    served = EdgeAnswer(True, "served on the edge at x.edge.localhost:41000")
    for tcp, reason in ((served, "Programmed"), (EdgeAnswer(), "Pending")):
        status = gatewayapi.gateway_status(gw, plan, EdgeAnswer(True, "", addresses, {"db": tcp}),
                                           "2026-02-02T00:00:00Z")
        db = status["listeners"][1]
        assert db["supportedKinds"] == [{"group": GROUP, "kind": "TCPRoute"}] and db["attachedRoutes"] == 1
        programmed = {c["type"]: c for c in db["conditions"]}["Programmed"]
        assert (programmed["reason"], programmed["message"]) == (reason, tcp.message)
