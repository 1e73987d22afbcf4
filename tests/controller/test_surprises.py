"""One Service's surprise stops nothing else: an odd API answer is contained to its Service."""

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
    cluster.service("odd", annotations=ENABLED)
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "odd")
    [pod] = standins.for_service(cluster.ns, "web")
    message = wait_for("the odd one's Warning", lambda: [m for t, r, m in cluster.events("odd")
                                                          if (t, r) == ("Warning", "ReconcileError")])
    assert "KeyError" in message[0]
    dnsname = exposed(cluster, edge, "web")
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
