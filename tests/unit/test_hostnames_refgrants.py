"""Table tests for hostname matching (lib/hostnames) and ReferenceGrant permission (lib/refgrants)."""

import pytest

from lib import hostnames, refgrants
from lib.refgrants import Ref


@pytest.mark.parametrize("pattern, name, expected", [
    ("", "anything.example.com", True),
    ("example.com", "example.com", True),
    ("example.com", "www.example.com", False),
    ("*.example.com", "foo.example.com", True),
    ("*.example.com", "foo.bar.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "fooexample.com", False),
    ("*.wildcard.io", "wildcard.io", False),
])
def test_matches(pattern, name, expected):
    assert hostnames.matches(pattern, name) is expected


@pytest.mark.parametrize("a, b, expected", [
    ("", "", ""),
    ("", "foo.com", "foo.com"),
    ("*.bar.com", "", "*.bar.com"),
    ("very.specific.com", "very.specific.com", "very.specific.com"),
    ("very.specific.com", "*.specific.com", "very.specific.com"),
    ("*.specific.com", "very.specific.com", "very.specific.com"),
    ("*.wildcard.io", "foo.bar.wildcard.io", "foo.bar.wildcard.io"),
    ("*.wildcard.io", "wildcard.io", None),
    ("*.example.com", "*.foo.example.com", "*.foo.example.com"),
    ("*.foo.example.com", "*.example.com", "*.foo.example.com"),
    ("*.example.com", "*.example.org", None),
    ("a.com", "b.com", None),
])
def test_intersect(a, b, expected):
    assert hostnames.intersect(a, b) == expected


def test_best_match_prefers_exact_then_longer_wildcard_then_any():
    patterns = ["", "*.bar.com", "foo.bar.com", "*.x.bar.com"]
    assert hostnames.best_match(patterns, "foo.bar.com") == "foo.bar.com"
    assert hostnames.best_match(patterns, "y.x.bar.com") == "*.x.bar.com"
    assert hostnames.best_match(patterns, "baz.bar.com") == "*.bar.com"
    assert hostnames.best_match(patterns, "other.org") == ""
    assert hostnames.best_match(["a.com"], "b.com") is None


@pytest.mark.parametrize("raw, expected", [
    ("Very.Specific.COM", "very.specific.com"), ("very.specific.com:1234", "very.specific.com"),
    ("example.com.", "example.com"), (None, ""), ("[::1]:80", "[::1]"),
])
def test_normalize(raw, expected):
    assert hostnames.normalize(raw) == expected


def grant(namespace, from_, to):
    return {"metadata": {"namespace": namespace, "name": "g"}, "spec": {"from": from_, "to": to}}


ROUTE_IN_INFRA = Ref("gateway.networking.k8s.io", "HTTPRoute", "infra")
WEB_BACKEND = Ref("", "Service", "web", "web-backend")
FROM_INFRA_ROUTES = [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "infra"}]


@pytest.mark.parametrize("grants, expected", [
    ([], False),
    ([grant("web", FROM_INFRA_ROUTES, [{"group": "", "kind": "Service", "name": "web-backend"}])], True),
    ([grant("web", FROM_INFRA_ROUTES, [{"group": "", "kind": "Service"}])], True),         # every Service there
    # the conformance suite's near misses: each wrong in one field
    ([grant("infra", FROM_INFRA_ROUTES, [{"group": "", "kind": "Service", "name": "web-backend"}])], False),
    ([grant("web", [{"group": "not-the-group", "kind": "HTTPRoute", "namespace": "infra"}],
            [{"group": "", "kind": "Service", "name": "web-backend"}])], False),
    ([grant("web", [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra"}],
            [{"group": "", "kind": "Service", "name": "web-backend"}])], False),
    ([grant("web", [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "elsewhere"}],
            [{"group": "", "kind": "Service", "name": "web-backend"}])], False),
    ([grant("web", FROM_INFRA_ROUTES, [{"group": "not-the-group", "kind": "Service", "name": "web-backend"}])], False),
    ([grant("web", FROM_INFRA_ROUTES, [{"group": "", "kind": "Secret", "name": "web-backend"}])], False),
    ([grant("web", FROM_INFRA_ROUTES, [{"group": "", "kind": "Service", "name": "other"}])], False),
])
def test_cross_namespace_needs_a_grant_in_the_target_namespace(grants, expected):
    assert refgrants.permitted(grants, ROUTE_IN_INFRA, WEB_BACKEND) is expected


def test_same_namespace_needs_no_grant():
    assert refgrants.permitted([], ROUTE_IN_INFRA, Ref("", "Service", "infra", "x"))
