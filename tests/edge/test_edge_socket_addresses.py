"""Sockets with an address of their own (--socket-addresses): a Gateway's address, routed whatever the Host."""

import http.client
import json

import pytest

from edge.testing import EdgeProcess
from edgetest_helpers import forward_argv, make_account

pytestmark = pytest.mark.timeout(120)
ADDRESSES = "127.100.3.0/30"            # two usable addresses: .1 and .2


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """An edge on every address of the namespace (0.0.0.0), owning ADDRESSES for sockets that ask."""
    proc = EdgeProcess(tmp_path_factory.mktemp("edge"), admin=True, extra_args=(
        "--socket-addresses", ADDRESSES, "--registration", "open", "--api-listen", "127.0.0.1"))
    proc.host = "0.0.0.0"
    with proc:
        proc.host = "127.0.0.1"        # the API, the SSH server and the socket names answer there too
        yield proc


def get(address, port, host, path="/"):
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Mysocket-Edge"), resp.read().decode(errors="replace")
    finally:
        conn.close()


def table(hostname, backend):
    return {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "hostname": hostname, "routes": [
        {"hostname": "", "match": {"path": {"type": "PathPrefix", "value": "/"}}, "action": 0}]}],
        "actions": [{"filters": [], "backends": [{"backend": backend, "weight": 1}]}]}


def test_an_own_address_routes_any_host_by_the_table(edge, tmp_path, ssh, backend):
    account = make_account(edge, tmp_path)
    made = [edge.api("POST", "/socket", {"name": f"gw{i}", "own_address": True}, token=account.token).body
            for i in range(2)]
    assert [s["address"] for s in made] == ["127.100.3.1", "127.100.3.2"]
    full = edge.api("POST", "/socket", {"name": "gw3", "own_address": True}, token=account.token)
    assert full.status == 503 and "--socket-addresses" in full.body["error_message"]
    plain = edge.api("POST", "/socket", {"name": "plain"}, token=account.token).body
    assert plain["address"] == ""

    gw = made[0]
    base = "/socket/{}".format(gw["socket_id"])
    tunnel = edge.api("POST", base + "/tunnel", {"backend": "shop/web:80"}, token=account.token).body
    app = backend("shop")
    ssh.start(forward_argv(edge, account, tunnel["local_port"], app.port))
    edge.wait_forward(tunnel["local_port"])
    assert edge.api("PUT", base + "/routes", {"routes": table("shop.example.com", "shop/web:80")},
                    token=account.token).status == 200

    status, _, body = get(gw["address"], edge.http_port, "shop.example.com", "/x")
    assert (status, body) == (200, "shop /x\n")
    status, reason, _ = get(gw["address"], edge.http_port, "other.example.com")
    assert (status, reason) == (404, "no-route")            # the listener is for shop.example.com only
    status, reason, _ = get("127.0.0.1", edge.http_port, "shop.example.com")
    assert (status, reason) == (404, "unknown-host")        # on the edge's other addresses: by Host, as before

    assert edge.api("DELETE", base, token=account.token).status == 204
    status, reason, _ = get(gw["address"], edge.http_port, "shop.example.com")
    assert (status, reason) == (404, "unknown-host")
    again = edge.api("POST", "/socket", {"name": "gw4", "own_address": True}, token=account.token).body
    assert again["address"] == "127.100.3.1"               # given back when its socket was deleted
    assert json.dumps(again).count("127.100.3.1") == 1
