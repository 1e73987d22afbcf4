"""Table tests for the Gateway API translation: classes, listeners, attachment, backends, precedence, status.

The cases follow the spec's rules and mirror what the conformance suite
checks (tests/conformance runs the suite itself against the real thing).
"""

import base64

import pytest

from lib import gatewayapi, gateways, httproutes, routetable
from lib.gatewayapi import EdgeAnswer, World

GROUP = "gateway.networking.k8s.io"
CERT = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n")
KEY = ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n")


def b64(text):
    return base64.b64encode(text.encode()).decode()


def secret(ns, name, crt=CERT, key=KEY):
    return {"metadata": {"namespace": ns, "name": name}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(crt), "tls.key": b64(key)}}


def gwclass(name="mysocket", controller=gateways.CONTROLLER_NAME, **spec):
    return {"metadata": {"name": name, "generation": 3}, "spec": {"controllerName": controller, **spec}}


def listener(name="http", port=80, protocol="HTTP", hostname=None, from_="Same", **extra):
    out = {"name": name, "port": port, "protocol": protocol,
           "allowedRoutes": {"namespaces": {"from": from_}}, **extra}
    if hostname:
        out["hostname"] = hostname
    return out


def gateway(name="gw", ns="infra", listeners=None, generation=2, annotations=None, **spec):
    return {"metadata": {"namespace": ns, "name": name, "generation": generation, "annotations": annotations or {}},
            "spec": {"gatewayClassName": "mysocket", "listeners": listeners or [listener()], **spec}}


def route(name="r", ns="infra", parents=None, rules=None, hostnames=None, created="2026-01-01T00:00:00Z",
          generation=1):
    spec = {"parentRefs": parents if parents is not None else [{"name": "gw", "namespace": "infra"}],
            "rules": rules if rules is not None else [{"backendRefs": [{"name": "svc", "port": 8080}]}]}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"metadata": {"namespace": ns, "name": name, "generation": generation, "creationTimestamp": created},
            "spec": spec}


def service(ns, name, port=8080, **port_extra):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9", "ports": [{"port": port, **port_extra}]}}


SERVICES = {("infra", "svc"): service("infra", "svc"), ("infra", "v2"): service("infra", "v2"),
            ("web", "web-backend"): service("web", "web-backend")}


def world(gws=(), routes=(), grants=(), secrets=None, services=None, labels=None, classes=None):
    return World(classes=classes if classes is not None else [gwclass()], gateways=list(gws),
                 http_routes=list(routes), grants=list(grants), services=services or SERVICES,
                 secrets=secrets or {}, namespace_labels=labels or {"infra": {"team": "infra"}, "web": {}})


# --- GatewayClass ---------------------------------------------------------------

@pytest.mark.parametrize("klass, accepted, reason", [
    (gwclass(), True, "Accepted"),
    (gwclass(parametersRef={"group": "x", "kind": "Y", "name": "z"}), False, "InvalidParameters"),
])
def test_class_of_ours(klass, accepted, reason):
    picture = gatewayapi.translate(world(classes=[klass]))
    assert (picture.classes["mysocket"].status, picture.classes["mysocket"].reason) == (accepted, reason)
    status = gatewayapi.class_status(klass, picture.classes["mysocket"], now="2026-01-01T00:00:00Z")
    assert status["conditions"][0]["observedGeneration"] == 3
    assert {"name": "HTTPRoute"} in status["supportedFeatures"]


def test_other_controllers_classes_and_their_gateways_are_not_ours():
    picture = gatewayapi.translate(world([gateway()], classes=[gwclass(controller="example.com/other")]))
    assert picture.classes == {} and picture.gateways == {}


# --- listeners --------------------------------------------------------------------

def only_listener(gw, secrets=None, grants=()):
    verdict = gateways.validate(gw, secrets or {}, list(grants))
    return verdict, verdict.listeners[0]


@pytest.mark.parametrize("entry, accepted, reason", [
    (listener(), True, "Accepted"),
    (listener(protocol="INVALID", port=1111), False, "UnsupportedProtocol"),
    (listener(protocol="UDP", port=80), False, "UnsupportedProtocol"),
    (listener(port=8080), False, "PortUnavailable"),
    (listener(protocol="HTTPS", port=80), False, "PortUnavailable"),
    (listener(protocol="TLS", port=443, tls={"mode": "Terminate"}), False, "UnsupportedValue"),
    (listener(protocol="TLS", port=443, tls={"mode": "Passthrough"}), True, "Accepted"),
])
def test_listener_accepted(entry, accepted, reason):
    _, lis = only_listener(gateway(listeners=[entry]))
    assert (lis.accepted.status, lis.accepted.reason) == (accepted, reason)


def test_unsupported_protocol_lists_no_kinds_and_fails_the_gateway_alone():
    verdict, lis = only_listener(gateway(listeners=[listener("invalid", 1111, "INVALID")]))
    assert lis.kinds == ()
    assert (verdict.accepted.status, verdict.accepted.reason) == (False, "ListenersNotValid")
    verdict = gateways.validate(gateway(listeners=[listener(), listener("invalid", 1111, "INVALID")]), {}, [])
    assert (verdict.accepted.status, verdict.accepted.reason) == (True, "ListenersNotValid")


@pytest.mark.parametrize("kinds, supported, resolved", [
    ([{"kind": "InvalidRoute"}], (), "InvalidRouteKinds"),
    ([{"kind": "InvalidRoute"}, {"kind": "HTTPRoute"}], ((GROUP, "HTTPRoute"),), "InvalidRouteKinds"),
    ([{"kind": "HTTPRoute", "group": GROUP}], ((GROUP, "HTTPRoute"),), "ResolvedRefs"),
    ([{"kind": "HTTPRoute", "group": ""}], (), "InvalidRouteKinds"),
    ([{"kind": "TLSRoute"}], (), "InvalidRouteKinds"),
])
def test_allowed_route_kinds(kinds, supported, resolved):
    entry = listener(allowedRoutes={"namespaces": {"from": "All"}, "kinds": kinds})
    _, lis = only_listener(gateway(listeners=[entry]))
    assert (lis.kinds, lis.resolved_refs.reason) == (supported, resolved)


def https(ref, name="https", hostname=None):
    return listener(name, 443, "HTTPS", hostname, tls={"certificateRefs": [ref]})


@pytest.mark.parametrize("ref, secrets, grants, reason, words", [
    ({"name": "cert"}, {("infra", "cert"): secret("infra", "cert")}, [], "ResolvedRefs", ""),
    ({"name": "missing"}, {}, [], "InvalidCertificateRef", "does not exist"),
    ({"group": "wrong.group.io", "kind": "Secret", "name": "cert"}, {("infra", "cert"): secret("infra", "cert")}, [],
     "InvalidCertificateRef", "only core Secrets"),
    ({"group": "", "kind": "WrongKind", "name": "cert"}, {("infra", "cert"): secret("infra", "cert")}, [],
     "InvalidCertificateRef", "only core Secrets"),
    ({"name": "bad"}, {("infra", "bad"): secret("infra", "bad", "Hello world\n", "Hello world\n")}, [],
     "InvalidCertificateRef", "no PEM certificate"),
    ({"name": "c", "namespace": "web"}, {("web", "c"): secret("web", "c")}, [], "RefNotPermitted", "ReferenceGrant"),
    ({"name": "c", "namespace": "web"}, {("web", "c"): secret("web", "c")},
     [{"metadata": {"namespace": "web"}, "spec": {
         "from": [{"group": GROUP, "kind": "Gateway", "namespace": "infra"}],
         "to": [{"group": "", "kind": "Secret", "name": "c"}]}}], "ResolvedRefs", ""),
    ({"name": "locked"}, {("infra", "locked"): gateways.UNREADABLE}, [], "InvalidCertificateRef",
     "may not read Secret infra/locked"),
])
def test_certificate_refs(ref, secrets, grants, reason, words):
    _, lis = only_listener(gateway(listeners=[https(ref)]), secrets, grants)
    assert lis.resolved_refs.reason == reason and words in lis.resolved_refs.message
    assert lis.accepted.status and lis.usable                  # routes still attach; the listener serves nothing
    assert lis.serving is (reason == "ResolvedRefs")
    assert bool(lis.certificates) is (reason == "ResolvedRefs")


@pytest.mark.parametrize("entries, conflicted", [
    ([listener("a"), listener("b")], [False, True]),
    ([listener("a", hostname="x.com"), listener("b", hostname="y.com")], [False, False]),
    ([listener("a", hostname="x.com"), listener("b", hostname="x.com")], [False, True]),
    ([https({"name": "c"}, "a"), listener("b", 443, "TLS", tls={"mode": "Passthrough"})], [False, True]),
    ([https({"name": "c"}, "a", "x.com"), listener("b", 443, "TLS", "y.com", tls={"mode": "Passthrough"})],
     [False, False]),
])
def test_conflicts(entries, conflicted):
    verdict = gateways.validate(gateway(listeners=entries), {("infra", "c"): secret("infra", "c")}, [])
    assert [lis.conflicted.status for lis in verdict.listeners] == conflicted
    assert [lis.accepted.status for lis in verdict.listeners] == [not c for c in conflicted]


def test_static_addresses_are_not_accepted():
    verdict = gateways.validate(gateway(addresses=[{"type": "IPAddress", "value": "10.0.0.1"}]), {}, [])
    assert (verdict.accepted.status, verdict.accepted.reason) == (False, "UnsupportedAddress")


# --- attachment ----------------------------------------------------------------------

def parent_of(route_, gws, labels=None):
    picture = gatewayapi.translate(world(gws, [route_], labels=labels))
    verdict = picture.routes[httproutes.key_of(route_)]
    return verdict.parents, picture


@pytest.mark.parametrize("ref, ns, reason", [
    ({"name": "gw", "namespace": "infra"}, "infra", "Accepted"),
    ({"name": "gw", "namespace": "infra", "sectionName": "http1"}, "infra", "NoMatchingParent"),
    ({"name": "gw", "namespace": "infra", "port": 81}, "infra", "NoMatchingParent"),
    ({"name": "gw", "namespace": "infra", "sectionName": "http", "port": 80}, "infra", "Accepted"),
    ({"name": "gw", "namespace": "infra"}, "web", "NotAllowedByListeners"),
])
def test_parent_ref_matching(ref, ns, reason):
    parents, _ = parent_of(route(ns=ns, parents=[ref]), [gateway()])
    assert parents[0].accepted.reason == reason
    assert parents[0].ref is ref                                     # echoed in status as written


def test_refs_to_gateways_not_ours_get_no_verdict():
    picture = gatewayapi.translate(world([gateway()], [route(parents=[{"name": "elsewhere"},
                                                                      {"name": "x", "kind": "Service", "group": ""}])]))
    assert picture.routes == {}


@pytest.mark.parametrize("selector, labels, accepted", [
    ({"matchLabels": {"team": "web"}}, {"web": {"team": "web"}}, True),
    ({"matchLabels": {"team": "web"}}, {"web": {"team": "ops"}}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["web", "x"]}]}, {"web": {"team": "web"}}, True),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"web": {"team": "web"}}, False),
])
def test_namespace_selector(selector, labels, accepted):
    gw = gateway(listeners=[listener(allowedRoutes={"namespaces": {"from": "Selector", "selector": selector}})])
    parents, _ = parent_of(route(ns="web", rules=[{}]), [gw], labels)
    assert parents[0].accepted.status is accepted


HOSTNAME_GW = gateway("hi", listeners=[listener("listener-1", hostname="very.specific.com"),
                                       listener("listener-2", hostname="*.wildcard.io"),
                                       listener("listener-3", hostname="*.anotherwildcard.io")])


def hi_route(name, hostnames):
    return route(name, parents=[{"name": "hi", "namespace": "infra"}], hostnames=hostnames)


def test_hostname_intersection_counts_attached_routes_per_listener():
    routes = [hi_route("s1", ["non.matching.com", "*.nonmatchingwildcard.io", "very.specific.com"]),
              hi_route("s2", ["non.matching.com", "wildcard.io", "foo.wildcard.io", "foo.bar.wildcard.io"]),
              hi_route("s3", ["non.matching.com", "*.specific.com"]),
              hi_route("s4", ["*.anotherwildcard.io"]),
              hi_route("s5", ["specific.but.wrong.com", "wildcard.io"])]
    picture = gatewayapi.translate(world([HOSTNAME_GW], routes))
    plan = picture.gateways[("infra", "hi")]
    assert plan.attached == {"listener-1": 2, "listener-2": 1, "listener-3": 1}
    s5 = picture.routes[("infra", "s5")].parents[0].accepted
    assert (s5.status, s5.reason) == (False, "NoMatchingListenerHostname")
    by_listener = {lis.name: {(e.hostname, e.match.path) for e in lis.entries} for lis in plan.listeners}
    assert by_listener["listener-1"] == {("very.specific.com", "/"), }
    assert by_listener["listener-2"] == {("foo.wildcard.io", "/"), ("foo.bar.wildcard.io", "/")}
    assert by_listener["listener-3"] == {("*.anotherwildcard.io", "/")}


def test_a_route_on_two_listeners_of_one_gateway_counts_once_on_each():
    gw = gateway(listeners=[listener("a", hostname="a.com"), listener("b", hostname="b.com")])
    r = route(parents=[{"name": "gw", "namespace": "infra", "sectionName": "a"},
                       {"name": "gw", "namespace": "infra", "sectionName": "b"}])
    picture = gatewayapi.translate(world([gw], [r]))
    assert picture.gateways[("infra", "gw")].attached == {"a": 1, "b": 1}
    assert len(picture.routes[("infra", "r")].parents) == 2


# --- backends and rules ----------------------------------------------------------------------

def rules_of(rules, grants=(), services=None, ns="infra"):
    return httproutes.rules(route(ns=ns, rules=rules), services or SERVICES, list(grants))


@pytest.mark.parametrize("ref, reason", [
    ({"name": "svc", "port": 8080}, "ResolvedRefs"),
    ({"name": "web-backend", "namespace": "web", "port": 8080}, "RefNotPermitted"),
    ({"name": "nonexistent", "port": 8080}, "BackendNotFound"),
    ({"name": "svc", "port": 9999}, "BackendNotFound"),
    ({"group": "unknownkind.example.com", "kind": "NonExistent", "name": "svc", "port": 8080}, "InvalidKind"),
])
def test_backend_refs(ref, reason):
    rules = rules_of([{"backendRefs": [ref]}])
    assert rules.resolved_refs.reason == reason
    backend = rules.actions[0].backends[0]
    assert (backend.key != "") is (reason == "ResolvedRefs")          # an invalid backend keeps its share: 500


def test_reference_grant_allows_the_cross_namespace_backend():
    grant = {"metadata": {"namespace": "web"}, "spec": {
        "from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "infra"}],
        "to": [{"group": "", "kind": "Service", "name": "web-backend"}]}}
    rules = rules_of([{"backendRefs": [{"name": "web-backend", "namespace": "web", "port": 8080}]}], [grant])
    assert rules.resolved_refs.status
    assert {t.key for t in rules.targets} == {"web/web-backend:8080"}


@pytest.mark.parametrize("app_protocol, ok", [(None, True), ("http", True), ("kubernetes.io/ws", True),
                                              ("kubernetes.io/h2c", True), ("grpc", False)])
def test_app_protocols(app_protocol, ok):
    services = {("infra", "svc"): service("infra", "svc", appProtocol=app_protocol)}
    assert rules_of([{"backendRefs": [{"name": "svc", "port": 8080}]}], services=services).resolved_refs.status is ok


def test_external_name_services_are_not_backends():
    services = {("infra", "svc"): {"metadata": {"namespace": "infra", "name": "svc"},
                                   "spec": {"type": "ExternalName", "externalName": "metadata.internal"}}}
    rules = rules_of([{"backendRefs": [{"name": "svc", "port": 80}]}], services=services)
    assert rules.resolved_refs.reason == "BackendNotFound" and "ExternalName" in rules.resolved_refs.message


def test_partially_invalid_backends_keep_the_valid_rule():
    rules = rules_of([{"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                       "backendRefs": [{"name": "web-backend", "namespace": "web", "port": 8080}]},
                      {"backendRefs": [{"name": "svc", "port": 8080}]}])
    assert rules.resolved_refs.reason == "RefNotPermitted"
    assert [b.key for a in rules.actions for b in a.backends] == ["", "infra/svc:8080"]


def test_weights_are_kept_with_invalid_shares():
    rules = rules_of([{"backendRefs": [{"name": "svc", "port": 8080, "weight": 3},
                                       {"name": "missing", "port": 8080, "weight": 1},
                                       {"name": "v2", "port": 8080, "weight": 0}]}])
    assert [(b.key, b.weight) for b in rules.actions[0].backends] == [
        ("infra/svc:8080", 3), ("", 1), ("infra/v2:8080", 0)]


def test_no_backend_refs_is_an_action_with_no_backend():
    rules = rules_of([{"matches": [{"path": {"type": "Exact", "value": "/omitted"}}]}, {"backendRefs": []}])
    assert rules.resolved_refs.status and [a.backends for a in rules.actions] == [(), ()]


def test_filters_become_the_edges_dicts():
    rules = rules_of([{"filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}],
                                                                    "remove": ["X-B"]}},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "h.com", "path": {"type": "ReplacePrefixMatch",
                                                                            "replacePrefixMatch": "/new"}}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "X-C", "value": "2"}]}}],
        "backendRefs": [{"name": "svc", "port": 8080, "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-D", "value": "3"}]}}]}]},
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301,
                                                                     "path": {"type": "ReplaceFullPath",
                                                                              "replaceFullPath": "/x"}}}]}])
    first, second = rules.actions
    assert first.filters == (
        {"type": "RequestHeaderModifier", "set": [{"name": "X-A", "value": "1"}], "add": [], "remove": ["X-B"]},
        {"type": "URLRewrite", "hostname": "h.com", "path": {"type": "ReplacePrefixMatch", "value": "/new"}},
        {"type": "ResponseHeaderModifier", "set": [], "add": [{"name": "X-C", "value": "2"}], "remove": []})
    assert first.backends[0].filters[0]["set"] == [{"name": "X-D", "value": "3"}]
    assert second.filters == ({"type": "RequestRedirect", "scheme": "https", "hostname": "", "port": 0,
                               "path": {"type": "ReplaceFullPath", "value": "/x"}, "statusCode": 301},)


def test_unsupported_filters_drop_the_rule_and_say_so():
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "svc", "port": 8080}}}
    r = route(rules=[{"filters": [mirror], "backendRefs": [{"name": "svc", "port": 8080}]},
                     {"backendRefs": [{"name": "svc", "port": 8080}]}])
    picture = gatewayapi.translate(world([gateway()], [r]))
    status = gatewayapi.route_status(picture.routes[("infra", "r")], now="2026-01-01T00:00:00Z")
    conds = {c["type"]: c for c in status["parents"][0]["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert conds["PartiallyInvalid"]["message"].startswith("Dropped Rule")
    r = route(rules=[{"filters": [mirror], "backendRefs": [{"name": "svc", "port": 8080}]}])
    picture = gatewayapi.translate(world([gateway()], [r]))
    status = gatewayapi.route_status(picture.routes[("infra", "r")], now="2026-01-01T00:00:00Z")
    conds = {c["type"]: c for c in status["parents"][0]["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "UnsupportedValue")
    assert "PartiallyInvalid" not in conds
    assert picture.gateways[("infra", "gw")].attached == {"http": 0}


def test_an_unknown_extension_filter_answers_500_never_skipped():
    rules = rules_of([{"filters": [{"type": "ExtensionRef", "extensionRef": {"group": "x.io", "kind": "F",
                                                                              "name": "f"}}],
                       "backendRefs": [{"name": "svc", "port": 8080}]}])
    assert rules.resolved_refs.reason == "InvalidKind"
    assert [b.key for b in rules.actions[0].backends] == [""]


# --- precedence -----------------------------------------------------------------------

def test_entries_follow_the_specs_precedence():
    def m(path_type="PathPrefix", value="/", method=None, headers=0, query=0):
        out = {"path": {"type": path_type, "value": value}}
        if method:
            out["method"] = method
        if headers:
            out["headers"] = [{"name": f"h{i}", "value": "v"} for i in range(headers)]
        if query:
            out["queryParams"] = [{"name": f"q{i}", "value": "v"} for i in range(query)]
        return out
    backend = [{"name": "svc", "port": 8080}]
    older = route("b-older", created="2025-01-01T00:00:00Z", rules=[
        {"matches": [m(value="/"), m(value="/abc")], "backendRefs": backend}])
    newer = route("a-newer", created="2026-01-01T00:00:00Z", rules=[
        {"matches": [m(value="/abc"), m("Exact", "/a"), m(value="/ab", method="GET"),
                     m(value="/ab", headers=2), m(value="/ab", headers=1, query=3), m(value="/ab", query=1)],
         "backendRefs": backend}])
    same_time = route("a-same", created="2025-01-01T00:00:00Z", rules=[
        {"matches": [m(value="/abc")], "backendRefs": backend}])
    plan = gatewayapi.translate(world([gateway()], [newer, older, same_time])).gateways[("infra", "gw")]
    got = [(e.origin.route, e.match.path_type, e.match.path, e.match.method, len(e.match.headers),
            len(e.match.query)) for e in plan.listeners[0].entries]
    assert got == [
        ("infra/a-newer", "Exact", "/a", "", 0, 0),
        ("infra/a-same", "PathPrefix", "/abc", "", 0, 0),       # same age as b-older: its name first
        ("infra/b-older", "PathPrefix", "/abc", "", 0, 0),
        ("infra/a-newer", "PathPrefix", "/abc", "", 0, 0),      # newest of the three
        ("infra/a-newer", "PathPrefix", "/ab", "GET", 0, 0),
        ("infra/a-newer", "PathPrefix", "/ab", "", 2, 0),
        ("infra/a-newer", "PathPrefix", "/ab", "", 1, 3),
        ("infra/a-newer", "PathPrefix", "/ab", "", 0, 1),
        ("infra/b-older", "PathPrefix", "/", "", 0, 0),
    ]


def test_more_specific_hostnames_come_first():
    gw = gateway(listeners=[listener(from_="All")])
    routes = [route("any", rules=[{"matches": [{"path": {"type": "Exact", "value": "/x"}}],
                                   "backendRefs": [{"name": "svc", "port": 8080}]}]),
              route("wild", hostnames=["*.example.com"]), route("exact", hostnames=["foo.example.com"])]
    plan = gatewayapi.translate(world([gw], routes)).gateways[("infra", "gw")]
    assert [e.hostname for e in plan.listeners[0].entries] == ["foo.example.com", "*.example.com", ""]


# --- the table and the statuses -------------------------------------------------------

def test_table_json_shares_one_action_per_rule():
    r = route(hostnames=["a.com", "b.com"], rules=[{"matches": [{"path": {"type": "Exact", "value": "/x"}},
                                                                {"path": {"type": "PathPrefix", "value": "/y"}}],
                                                    "backendRefs": [{"name": "svc", "port": 8080}]}])
    gw = gateway(listeners=[https({"name": "c"})])
    plan = gatewayapi.translate(world([gw], [r], secrets={("infra", "c"): secret("infra", "c")})).gateways[
        ("infra", "gw")]
    table = plan.table
    assert len(table["actions"]) == 1 and len(table["listeners"][0]["routes"]) == 4
    assert table["listeners"][0]["certificates"] == [{"cert": CERT, "key": KEY}]
    assert table["actions"][0]["backends"] == [{"backend": "infra/svc:8080", "weight": 1, "filters": []}]
    assert table["listeners"][0]["routes"][0] == {
        "hostname": "a.com", "match": {"path": {"type": "Exact", "value": "/x"}, "method": "", "headers": [],
                                       "query": []}, "action": 0}
    assert {t.key for t in plan.targets} == {"infra/svc:8080"}


def test_listeners_that_cannot_serve_get_no_table():
    gw = gateway(listeners=[listener(), https({"name": "missing"})])
    plan = gatewayapi.translate(world([gw], [route()])).gateways[("infra", "gw")]
    assert [lis.name for lis in plan.listeners] == ["http"]


NOW = "2026-02-02T00:00:00Z"


def test_gateway_status_programmed_with_the_edges_address():
    gw = gateway(listeners=[listener(), listener("invalid", 1111, "INVALID")])
    plan = gatewayapi.translate(world([gw], [route()])).gateways[("infra", "gw")]
    addresses = ({"type": "IPAddress", "value": "127.1.0.1"}, {"type": "Hostname", "value": "x.edge.localhost"})
    status = gatewayapi.gateway_status(gw, plan, EdgeAnswer(True, "", addresses), NOW)
    assert status["addresses"] == list(addresses)
    gc = {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in status["conditions"]}
    assert gc == {"Accepted": ("True", "ListenersNotValid", 2), "Programmed": ("True", "Programmed", 2)}
    http, invalid = status["listeners"]
    assert http["attachedRoutes"] == 1 and http["supportedKinds"] == [{"group": GROUP, "kind": "HTTPRoute"},
                                                                      {"group": GROUP, "kind": "GRPCRoute"}]
    assert {c["type"]: c["status"] for c in http["conditions"]} == {
        "Accepted": "True", "Conflicted": "False", "ResolvedRefs": "True", "Programmed": "True"}
    assert invalid["supportedKinds"] == []
    assert {c["type"]: c["reason"] for c in invalid["conditions"]}["Programmed"] == "Invalid"


@pytest.mark.parametrize("edge, reason", [
    (EdgeAnswer(), "Pending"),
    (EdgeAnswer(True, "", ()), "AddressNotAssigned"),
])
def test_gateway_status_not_programmed(edge, reason):
    gw = gateway()
    plan = gatewayapi.translate(world([gw])).gateways[("infra", "gw")]
    status = gatewayapi.gateway_status(gw, plan, edge, NOW)
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Programmed"] == reason
    assert {c["type"]: c["reason"] for c in status["listeners"][0]["conditions"]}["Programmed"] == "Pending"


def test_unchanged_conditions_keep_their_transition_time_and_others_are_kept():
    r = route()
    verdict = gatewayapi.translate(world([gateway()], [r])).routes[("infra", "r")]
    first = gatewayapi.route_status(verdict, now="2026-01-01T00:00:00Z")
    foreign = {"parentRef": {"name": "other"}, "controllerName": "example.com/other", "conditions": []}
    r2 = dict(r, status={"parents": first["parents"] + [foreign]})
    r2["metadata"] = dict(r["metadata"], generation=2)
    verdict = gatewayapi.translate(world([gateway()], [r2])).routes[("infra", "r")]
    second = gatewayapi.route_status(verdict, now="2026-03-03T00:00:00Z")
    assert second["parents"][1] == foreign
    times = {c["type"]: (c["lastTransitionTime"], c["observedGeneration"]) for c in second["parents"][0]["conditions"]}
    assert times == {"Accepted": ("2026-01-01T00:00:00Z", 2), "ResolvedRefs": ("2026-01-01T00:00:00Z", 2)}


def test_backends_of_a_table():
    plan = gatewayapi.translate(world([gateway()], [route()])).gateways[("infra", "gw")]
    assert routetable.backends_of(plan.listeners) == {"infra/svc:8080"}


def test_a_pooled_gateway_leaves_services_it_lacks_to_the_other_clusters():
    gw = gateway(annotations=None)
    gw["metadata"]["annotations"] = {"mysocket.io/pool": "shop"}
    r = route(rules=[{"backendRefs": [{"name": "svc", "port": 8080, "weight": 3},
                                      {"name": "in-the-other-cluster", "port": 8080, "weight": 1},
                                      {"name": "svc", "port": 9999, "weight": 1}]}])
    picture = gatewayapi.translate(world([gw], [r]))
    plan = picture.gateways[("infra", "gw")]
    assert [(b.key, b.weight) for b in plan.listeners[0].entries[0].action.backends] == [
        ("infra/svc:8080", 3), ("infra/in-the-other-cluster:8080", 1), ("", 1)]   # a missing port is still wrong
    assert {t.key for t in plan.targets} == {"infra/svc:8080"}                     # tunnels only for what is here
    resolved = picture.routes[("infra", "r")].rules.resolved_refs
    assert resolved.reason == "BackendNotFound" and "no port 9999" in resolved.message
    r = route(rules=[{"backendRefs": [{"name": "in-the-other-cluster", "port": 8080}]}])
    resolved = gatewayapi.translate(world([gw], [r])).routes[("infra", "r")].rules.resolved_refs
    assert resolved.status and "left to the pool's other clusters: infra/in-the-other-cluster:8080" in resolved.message
    unpooled = gatewayapi.translate(world([gateway()], [r])).routes[("infra", "r")].rules.resolved_refs
    assert unpooled.reason == "BackendNotFound"


def tls_route(name="t", hostnames=("abc.example.com",), backend="svc", ns="infra", parent="gw"):
    return {"metadata": {"namespace": ns, "name": name, "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": parent, "namespace": "infra"}], "hostnames": list(hostnames),
                     "rules": [{"backendRefs": [{"name": backend, "port": 8080}]}]}}


PASSTHROUGH = listener("tls", 443, "TLS", "*.example.com", tls={"mode": "Passthrough"})


def test_tls_routes_attach_to_passthrough_listeners_by_sni():
    picture = gatewayapi.translate(World(classes=[gwclass()], gateways=[gateway(listeners=[PASSTHROUGH, listener()])],
                                         tls_routes=[tls_route(), tls_route("other", ("abc.other.org",))],
                                         services=SERVICES, namespace_labels={"infra": {}}))
    plan = picture.gateways[("infra", "gw")]
    assert plan.attached == {"tls": 1, "http": 0}
    tls_table = plan.table["listeners"][0]
    assert (tls_table["protocol"], tls_table["port"]) == ("TLS", 443)
    assert [(r["hostname"], plan.table["actions"][r["action"]]["backends"][0]["backend"])
            for r in tls_table["routes"]] == [("abc.example.com", "infra/svc:8080")]
    other = picture.tls_routes[("infra", "other")].parents[0].accepted
    assert (other.status, other.reason) == (False, "NoMatchingListenerHostname")
    assert picture.routes == {}                                     # HTTPRoutes and TLSRoutes apart


def test_tls_routes_do_not_attach_to_http_listeners_nor_http_routes_to_tls():
    gw = gateway(listeners=[listener()])
    picture = gatewayapi.translate(World(classes=[gwclass()], gateways=[gw], tls_routes=[tls_route()],
                                         services=SERVICES, namespace_labels={"infra": {}}))
    assert picture.tls_routes[("infra", "t")].parents[0].accepted.reason == "NotAllowedByListeners"
    gw = gateway(listeners=[PASSTHROUGH])
    picture = gatewayapi.translate(World(classes=[gwclass()], gateways=[gw], http_routes=[route()],
                                         services=SERVICES, namespace_labels={"infra": {}}))
    assert picture.routes[("infra", "r")].parents[0].accepted.reason == "NotAllowedByListeners"


def test_a_tls_routes_grant_names_tlsroute():
    grant = {"metadata": {"namespace": "web"}, "spec": {
        "from": [{"group": GROUP, "kind": "TLSRoute", "namespace": "infra"}],
        "to": [{"group": "", "kind": "Service"}]}}
    r = tls_route(backend="web-backend")
    r["spec"]["rules"][0]["backendRefs"][0].update(namespace="web")
    tls_rules = httproutes.rules(r, SERVICES, [grant], kind=gateways.TLS_ROUTE)
    http_rules = httproutes.rules(r, SERVICES, [grant])
    assert tls_rules.resolved_refs.status and http_rules.resolved_refs.reason == "RefNotPermitted"


def test_a_terminating_tls_listener_is_an_unsupported_value_whatever_its_port():
    entry = listener("tls-terminate", 8443, "TLS", "terminate.example.com", tls={"mode": "Terminate"})
    verdict = gateways.validate(gateway(listeners=[entry]), {}, [])
    assert (verdict.listeners[0].accepted.status, verdict.listeners[0].accepted.reason) == (False, "UnsupportedValue")
