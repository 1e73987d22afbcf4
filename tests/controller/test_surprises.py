"""One Service's surprise stops nothing else: an odd API answer is contained to its Service."""

import threading

import pytest

from devcluster.apiproxy import ApiProxy, creating
from devcluster.stack import account_sockets, answered, exposed, wait_for

ENABLED = {"mysocket.io/enabled": "true"}


@pytest.fixture
def odd_api(edge):
    """The edge's API with `socket_id` dropped from the answer to creating `.../odd`."""
    def drop_socket_id(method, path, body, answer):
        if creating("/odd")(method, path, body):
            answer.pop("socket_id", None)
        return answer

    with ApiProxy(edge.api_url, rewrite=drop_socket_id) as proxy:
        yield proxy.url


def test_an_answer_without_socket_id_is_contained_to_its_service(cluster, standins, make_controller, edge, odd_api):
    c = make_controller(extra_args=["--api-url", odd_api])
    cluster.service("web", annotations=ENABLED)
    [pod] = standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")
    # Now that the first sweep (right after taking the lead) is behind it: a sweep's fresh list while the
    # odd create is on its way would find that socket by name, and the odd answer would never be read.
    cluster.service("odd", annotations=ENABLED)
    standins.for_service(cluster.ns, "odd")
    message = wait_for("the odd one's Warning", lambda: [m for t, r, m in cluster.events("odd")
                                                          if (t, r) == ("Warning", "ReconcileError")])
    assert "KeyError" in message[0]
    assert answered(edge, dnsname) == f"Server: {pod.name}\n"
    assert c.proc.poll() is None, "the controller exited"
    tracebacks = [r for r in c.log_records() if r.get("message", "").startswith("unexpected error in reconcile")]
    assert len(tracebacks) == 1 and "Traceback" in tracebacks[0].get("exc_info", "")
    exposed(cluster, edge, "odd")           # its retry finds the socket by name and carries on


def test_one_held_api_call_holds_up_no_other_service(cluster, standins, make_controller, edge, account):
    with ApiProxy(edge.api_url, hold=creating("/slow")) as proxy:
        make_controller(extra_args=["--api-url", proxy.url])
        cluster.service("slow", annotations=ENABLED)
        standins.for_service(cluster.ns, "slow")
        wait_for("slow's create sent and held", lambda: proxy.held)
        cluster.service("fast", annotations=ENABLED)
        [pod] = standins.for_service(cluster.ns, "fast")
        dnsname = exposed(cluster, edge, "fast")
        assert not proxy.abandoned.is_set(), "fast was served only after the controller gave up on slow's call"
        assert answered(edge, dnsname) == f"Server: {pod.name}\n"
        proxy.release.set()
        exposed(cluster, edge, "slow")
        assert sorted(s["name"].rsplit("/", 1)[1] for s in account_sockets(edge, account)) == ["fast", "slow"]


def test_a_held_socket_list_holds_up_no_supervision(cluster, standins, make_controller, edge):
    """The sweep's list of the account's sockets is held by the API: the loop goes on, so an ssh child
    that dies meanwhile is back, and the name answers, before the client even gives up on the list."""
    holding = threading.Event()
    lists = lambda method, path, body: holding.is_set() and method == "GET" and path.endswith("/connect")  # noqa: E731
    with ApiProxy(edge.api_url, hold=lists) as proxy:
        c = make_controller(extra_args=["--api-url", proxy.url, "--resync-seconds", "1"])
        cluster.service("web", annotations=ENABLED)
        [pod] = standins.for_service(cluster.ns, "web")
        dnsname = exposed(cluster, edge, "web")
        holding.set()
        wait_for("the sweep's list sent and held", lambda: proxy.held)
        [child] = c.ssh_children()
        child.kill()
        wait_for("a new ssh child", lambda: [p.pid for p in c.ssh_children()] not in ([], [child.pid]))
        wait_for("the name answering again", lambda: answered(edge, dnsname) == f"Server: {pod.name}\n")
        assert not proxy.abandoned.is_set(), "the child came back only after the controller gave up on the list"
        assert c.http("/healthz")[0] == 200
