"""`mysocket.io/hostnames`: a Service's custom names, proven through real DNS, served by its pods.

The module's edge asks pebble-challtestsrv (started by edge.pebbletesting's Pebble, whose ACME side
is not used here) for the proofs: the test writes the user's records there, as a user would at their
DNS host. The controller runs as the manifest's ServiceAccount against a real kube-apiserver.
"""

import pytest

from devcluster.controller import Account
from devcluster.stack import account_sockets, answered, exposed, wait_for
from edge.pebbletesting import Pebble, have_pebble
from edge.testing import EdgeOptions, EdgeProcess

ENABLED = {"mysocket.io/enabled": "true"}
HOSTNAMES = "mysocket.io/hostnames"


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    with Pebble(tmp_path_factory.mktemp("pebble")) as p:
        yield p


@pytest.fixture(scope="module")
def edge(tmp_path_factory, dns):
    """This module's edge: custom names proven against the test's DNS."""
    with EdgeProcess(tmp_path_factory.mktemp("edge"), EdgeOptions(admin=True, extra_args=(
            "--hostname-resolver", "127.0.0.1:{}".format(dns.dns_port)))) as proc:
        dns.start(proc.http_port)
        yield proc


def events_of(cluster, name, reason):
    return [(kind, message) for kind, r, message in cluster.events(name) if r == reason]


def condition(cluster, name):
    """(status, reason, message) of the Service's mysocket.io/HostnamesVerified condition, or None."""
    found = [c for c in ((cluster.get(name) or {}).get("status") or {}).get("conditions") or []
             if c["type"] == "mysocket.io/HostnamesVerified"]
    return (found[0]["status"], found[0]["reason"], found[0]["message"]) if found else None


def test_a_proven_name_is_served_and_an_unproven_one_says_what_to_create(cluster, standins, controller, edge,
                                                                       account, dns):
    cluster.service("shop")
    pods = standins.for_service(cluster.ns, "shop")
    cluster.annotate("shop", **ENABLED)
    dnsname = exposed(cluster, edge, "shop")
    dns.dns("set-cname", host="shop.example.test.", target=dnsname + ".")     # the user's record
    cluster.annotate("shop", **{HOSTNAMES: "shop.example.test, later.example.test"})

    [(kind, message)] = wait_for("a HostnameVerified Event", lambda: events_of(cluster, "shop", "HostnameVerified"))
    assert kind == "Normal" and message == f"shop.example.test is served: verified by its CNAME to {dnsname}"
    assert answered(edge, "shop.example.test") == f"Server: {pods[0].name}\n"
    [(kind, message)] = wait_for("a HostnameUnverified Event",
                                 lambda: events_of(cluster, "shop", "HostnameUnverified"))
    assert kind == "Warning" and message.startswith("later.example.test is not served yet: not verified: no proof "
                                                    "found for later.example.test; create a CNAME record "
                                                    f"later.example.test -> {dnsname}, or a TXT record "
                                                    "_mysocket-challenge.later.example.test with the value "
                                                    "mysocket-verify="), message
    assert edge.get("later.example.test")[0] == 404
    status, reason, said = wait_for("the HostnamesVerified condition", lambda: condition(cluster, "shop"))
    assert (status, reason) == ("False", "Unverified") and said.startswith(
        "later.example.test: not verified: no proof found for later.example.test; create a CNAME record"), said

    dns.dns("set-cname", host="later.example.test.", target=dnsname + ".")    # the user creates it
    wait_for("both names served, and said so", lambda: condition(cluster, "shop") == (
        "True", "Verified", "served: later.example.test, shop.example.test"), timeout=60)
    assert answered(edge, "later.example.test") == f"Server: {pods[0].name}\n"

    cluster.annotate("shop", **{HOSTNAMES: None})           # removed: the edge lets the name go
    wait_for("shop.example.test no longer served", lambda: edge.get("shop.example.test")[0] == 404)
    wait_for("the condition taken off", lambda: condition(cluster, "shop") is None)
    [socket] = account_sockets(edge, account)
    assert socket["hostnames"] == [] and answered(edge, dnsname)


def test_a_bad_value_and_another_accounts_name_are_warnings_and_the_service_stays(cluster, standins, controller,
                                                                                 edge, tmp_path, dns):
    other = Account.register(edge, tmp_path / "other")      # proves taken.example.test for itself
    token = edge.login(other.email, other.password)
    theirs = edge.api("POST", "/socket", {"name": "theirs"}, token=token).body
    dns.dns("set-cname", host="taken.example.test.", target=theirs["dnsname"] + ".")
    got = edge.api("PUT", f"/socket/{theirs['socket_id']}/hostnames", {"hostnames": ["taken.example.test"]},
                   token=token)
    assert got.body["hostnames"][0]["verified"] is True, got.body

    cluster.service("web")
    standins.for_service(cluster.ns, "web")
    cluster.annotate("web", **ENABLED)
    dnsname = exposed(cluster, edge, "web")
    cluster.annotate("web", **{HOSTNAMES: "*.example.test"})
    [(kind, message)] = wait_for("an InvalidAnnotation Event", lambda: events_of(cluster, "web", "InvalidAnnotation"))
    assert kind == "Warning" and message.startswith("mysocket.io/hostnames: '*.example.test' is a wildcard: name "
                                                    "each host (a wildcard cannot be proven by one DNS record)")
    assert answered(edge, dnsname)              # the last valid options go on serving meanwhile

    cluster.annotate("web", **{HOSTNAMES: "taken.example.test"})
    [(kind, message)] = wait_for("a HostnameRefused Event", lambda: events_of(cluster, "web", "HostnameRefused"))
    assert kind == "Warning" and message == ("the edge refused taken.example.test: taken.example.test is proven "
                                             "by another account: it cannot be claimed here")
    assert answered(edge, dnsname)
    assert wait_for("the Refused condition", lambda: condition(cluster, "web")) == ("False", "Refused", message)
