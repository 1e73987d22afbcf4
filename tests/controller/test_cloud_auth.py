"""Cloud authentication declared on the Service (issue 22): mysocket.io/cloud-auth-emails and
-domains set the socket's lists, a change reaches the running socket without a new name, and
a bad value is a Warning Event that keeps what worked."""

from devcluster.stack import account_sockets, annotations, wait_for
from lib.services import DNSNAME

ENABLED = {"mysocket.io/enabled": "true"}
EMAILS, DOMAINS = "mysocket.io/cloud-auth-emails", "mysocket.io/cloud-auth-domains"
ADDRESSES, DOMAIN_LIST = ("cloud_authentication_email_allowed_addressses",
                          "cloud_authentication_email_allowed_domains")


def lists(edge, account):
    [remote] = account_sockets(edge, account)
    return remote["dnsname"], sorted(remote[ADDRESSES]), sorted(remote[DOMAIN_LIST])


def test_the_annotations_change_the_lists_of_the_running_socket(cluster, standins, controller, edge, account):
    cluster.service("web", annotations={**ENABLED, EMAILS: "alice@example.com"})
    standins.for_service(cluster.ns, "web")
    dnsname = wait_for("exposed", lambda: annotations(cluster.get("web")).get(DNSNAME))
    [remote] = account_sockets(edge, account)
    assert remote["cloud_authentication_enabled"] is True
    assert lists(edge, account) == (dnsname, ["alice@example.com"], [])

    cluster.annotate("web", **{EMAILS: "bob@example.com, alice@example.com", DOMAINS: "corp.example"})
    wait_for("CloudAuthChanged", lambda: any(r == "CloudAuthChanged" for _, r, _ in cluster.events("web")))
    assert wait_for("the new lists on the same socket", lambda: lists(edge, account) == (
        dnsname, ["alice@example.com", "bob@example.com"], ["corp.example"]))
    assert not any(r == "SocketReplaced" for _, r, _ in cluster.events("web"))

    cluster.annotate("web", **{DOMAINS: "-bad-.example"})   # a bad value: a Warning, the lists kept
    wait_for("the Warning", lambda: any(t == "Warning" and r == "InvalidAnnotation" and m.startswith(DOMAINS)
                                        for t, r, m in cluster.events("web")))
    assert lists(edge, account) == (dnsname, ["alice@example.com", "bob@example.com"], ["corp.example"])
    assert annotations(cluster.get("web"))[DNSNAME] == dnsname
    assert controller.proc.poll() is None
