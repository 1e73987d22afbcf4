"""Gateways and HTTPRoutes on one cluster, through mysocketd and the edge: statuses with the spec's reasons,
a cross-namespace backend that needs a ReferenceGrant, edits that reach the edge without dropping a
connection, a listener hostname served on the edge's shared address once proven through DNS.

This module's edge is conftest's with custom hostnames proven against pebble-challtestsrv (the test's
own DNS), so the last test shares the module's control plane instead of starting one of its own."""

import http.client
import threading
import time

import pytest
from conftest import ADDRESSES
from gwtest_helpers import Load, apply, condition, fetch, gateway, gateway_address, get, route, service

from devcluster.stack import wait_for
from edge.pebbletesting import Pebble, have_pebble
from edge.testing import EdgeProcess

pytestmark = pytest.mark.timeout(240)

CUSTOM = "gw.example.test"


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    with Pebble(tmp_path_factory.mktemp("pebble")) as p:
        yield p


@pytest.fixture(scope="module")
def gw_edge(tmp_path_factory, dns):
    """conftest's edge, its custom names proven against the test's DNS (checked every second)."""
    edge = EdgeProcess(tmp_path_factory.mktemp("edge"), extra_args=(
        "--socket-addresses", ADDRESSES, "--registration", "open", "--api-listen", "127.0.0.1",
        "--tunnel-server", "127.0.0.1", "--hostname-resolver", "127.0.0.1:{}".format(dns.dns_port),
        "--hostname-check-interval", "1"))
    edge.host = "0.0.0.0"
    with edge:
        edge.host = "127.0.0.1"
        dns.start(edge.http_port)
        yield edge


def resolved(cp, ns, name):
    c = condition(get(cp, "httproute", ns, name), "ResolvedRefs")
    return (c["status"], c["reason"]) if c else None


def answer_from(edge, address, path="/", host="shop.example.com"):
    """The body of a 200 through the edge, or None (for wait_for)."""
    status, body = fetch(edge, address, path, host)
    return body if status == 200 else None


def test_class_and_gateway_statuses_and_a_listener_hostname(installed):
    cp, edge = installed.cp, installed.edge
    cp.kubectl("create", "namespace", "statuses")
    gw = gateway("statuses")
    gw["spec"]["listeners"][0]["hostname"] = "shop.example.com"
    apply(cp, service("statuses", "app", "10.96.230.1"), gw,
          route("statuses", [{"backendRefs": [{"name": "app", "port": 8000}]}]))
    installed.pods.for_service("statuses", "app")
    address = gateway_address(cp, "statuses", "web")
    assert address.startswith("127.100.2.")
    assert gateway_address(cp, "statuses", "web", kind="Hostname").endswith(".edge.localhost")
    klass = get(cp, "gatewayclass", "", "mysocket")
    accepted = next(c for c in klass["status"]["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    gw = get(cp, "gateway", "statuses", "web")
    assert (condition(gw, "Accepted", parent=None)["reason"], condition(gw, "Programmed", parent=None)["reason"]) \
        == ("Accepted", "Programmed")
    assert gw["status"]["listeners"][0]["attachedRoutes"] == 1
    wait_for("the route resolved", lambda: resolved(cp, "statuses", "r") == ("True", "ResolvedRefs"))
    assert condition(get(cp, "httproute", "statuses", "r"), "Accepted")["reason"] == "Accepted"
    assert wait_for("the app through the Gateway", lambda: answer_from(edge, address)).startswith("Server: app")
    assert fetch(edge, address, host="other.example.com")[0] == 404     # not the listener's hostname


def test_a_backend_in_another_namespace_needs_a_reference_grant(installed):
    cp, edge = installed.cp, installed.edge
    for ns in ("storefront", "billing"):
        cp.kubectl("create", "namespace", ns)
    apply(cp, service("billing", "invoices", "10.96.231.1"), gateway("storefront"),
          route("storefront", [{"backendRefs": [{"name": "invoices", "namespace": "billing", "port": 8000}]}]))
    installed.pods.for_service("billing", "invoices")
    address = gateway_address(cp, "storefront", "web")
    wait_for("the route refused", lambda: resolved(cp, "storefront", "r") == ("False", "RefNotPermitted"))
    message = condition(get(cp, "httproute", "storefront", "r"), "ResolvedRefs")["message"]
    assert "billing/invoices" in message and "ReferenceGrant" in message
    assert wait_for("the refused backend's 500", lambda: fetch(edge, address)[0] == 500)
    apply(cp, {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
               "metadata": {"name": "storefront-may-bill", "namespace": "billing"},
               "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                  "namespace": "storefront"}],
                        "to": [{"group": "", "kind": "Service", "name": "invoices"}]}})
    wait_for("the granted route resolved", lambda: resolved(cp, "storefront", "r") == ("True", "ResolvedRefs"))
    assert wait_for("the backend answering", lambda: answer_from(edge, address)).startswith("Server: invoices")


class KeepAlive:
    """One visitor connection kept open, a request on it every 10 ms: none may fail while routes change."""

    def __init__(self, edge, address):
        self.conn = http.client.HTTPConnection(address, edge.http_port, timeout=5)
        self.answers, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.01):
            try:
                self.conn.request("GET", "/", headers={"Host": "shop.example.com"})
                resp = self.conn.getresponse()
                self.answers.append((resp.status, resp.read().decode(errors="replace").strip()))
            except OSError as e:
                self.answers.append((None, repr(e)))
                self.conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


def test_route_edits_reach_the_edge_and_drop_no_connection(installed):
    cp, edge = installed.cp, installed.edge
    cp.kubectl("create", "namespace", "edits")
    apply(cp, service("edits", "blue", "10.96.232.1"), service("edits", "green", "10.96.232.2"), gateway("edits"),
          route("edits", [{"backendRefs": [{"name": "blue", "port": 8000}]}]))
    for name in ("blue", "green"):
        installed.pods.for_service("edits", name)
    address = gateway_address(cp, "edits", "web")
    wait_for("blue answering", lambda: (answer_from(edge, address) or "").startswith("Server: blue"))
    with KeepAlive(edge, address) as kept, Load(edge, address) as load:
        started = time.monotonic()
        for i in range(4):
            colour = ("green", "blue")[i % 2]
            apply(cp, route("edits", [{"backendRefs": [{"name": colour, "port": 8000}]}]))
            wait_for(f"the edit to {colour} effective", lambda c=colour: all(
                body.startswith(f"Server: {c}") for _, _, body in load.since(time.monotonic() - 0.2)[-3:]) and
                (answer_from(edge, address) or "").startswith(f"Server: {c}"), timeout=30, interval=0.05)
        during = load.since(started)
        assert Load.failed(during) == [], Load.failed(during)[:5]
        assert kept.answers and [a for a in kept.answers if a[0] != 200] == []
        colours = {body.split()[1].split("-")[0] for _, body in kept.answers}
        assert colours == {"blue", "green"}, colours            # the same connection saw both tables


def test_a_listener_hostname_is_served_on_the_shared_address_once_proven(installed, dns):
    cp, edge = installed.cp, installed.edge
    cp.kubectl("create", "namespace", "custom")
    gw = gateway("custom")
    gw["spec"]["listeners"][0]["hostname"] = CUSTOM
    apply(cp, service("custom", "app", "10.96.233.1"), gw, route("custom", [{"backendRefs": [
        {"name": "app", "port": 8000}]}]))
    installed.pods.for_service("custom", "app")
    own = gateway_address(cp, "custom", "web")
    dnsname = gateway_address(cp, "custom", "web", kind="Hostname")
    assert wait_for("the app on the Gateway's own address", lambda: fetch(edge, own, host=CUSTOM)[0] == 200)

    def said():
        message = condition(get(cp, "gateway", "custom", "web"), "Programmed", parent=None)["message"]
        return message if CUSTOM in message else None
    message = wait_for("the Programmed message naming the record", said)
    assert f"create a CNAME record {CUSTOM} -> {dnsname}" in message, message
    assert fetch(edge, "127.0.0.1", host=CUSTOM)[0] == 404        # unproven: not on the shared address

    dns.dns("set-cname", host=CUSTOM + ".", target=dnsname + ".")
    assert wait_for("the app on the shared address", lambda: fetch(edge, "127.0.0.1", host=CUSTOM)[0] == 200)
    assert fetch(edge, "127.0.0.1", host=CUSTOM)[1].startswith("Server: app")
