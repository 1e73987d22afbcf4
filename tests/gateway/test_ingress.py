"""An Ingress as a user applies it: an existing manifest (yaml/examples/ingress-fanout.yaml, the Kubernetes
documentation's simple fanout with the class annotation), kubectl apply, and the answers through the edge."""

import json

import pytest
from gwtest_helpers import REPO_ROOT, apply, fetch, service

from devcluster.stack import wait_for

pytestmark = pytest.mark.timeout(180)
EXAMPLE = REPO_ROOT / "yaml" / "examples" / "ingress-fanout.yaml"


def load_balancer(cp):
    out = cp.kubectl("get", "ingress", "simple-fanout-example", "-n", "fanout", "-o", "json").stdout
    return ((json.loads(out).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


def test_an_existing_ingress_manifest_is_served(installed):
    cp, edge = installed.cp, installed.edge
    cp.kubectl("create", "namespace", "fanout")
    apply(cp, service("fanout", "service1", "10.96.241.1", 4200), service("fanout", "service2", "10.96.241.2", 8080))
    for name in ("service1", "service2"):
        installed.pods.for_service("fanout", name)
    cp.kubectl("apply", "-n", "fanout", "-f", str(EXAMPLE))
    ingress = wait_for("the Ingress's address in its status", lambda: load_balancer(cp), timeout=60)
    address = next(i["ip"] for i in ingress if "ip" in i)
    dnsname = next(i["hostname"] for i in ingress if "hostname" in i)
    assert address.startswith("127.100.2.") and dnsname.endswith(".edge.localhost")
    first = wait_for("/foo answering", lambda: (lambda a: a if a[0] == 200 else None)(
        fetch(edge, address, "/foo/x", host="foo.bar.com")), timeout=60)
    assert first[1].startswith("Server: service1")
    assert fetch(edge, address, "/bar", host="foo.bar.com")[1].startswith("Server: service2")
    assert fetch(edge, address, "/baz", host="foo.bar.com")[0] == 404          # no rule, no default backend
    assert fetch(edge, address, "/foo", host="other.example")[0] == 404       # the rule is for foo.bar.com
    cp.kubectl("delete", "-n", "fanout", "-f", str(EXAMPLE))
    wait_for("the Ingress's socket gone", lambda: fetch(edge, address, "/foo", host="foo.bar.com")[0] != 200,
             timeout=60)
