"""A socket's route table on the real edge: matches, filters, weights, the edge's own answers.

The edge process, the real OpenSSH client and backends on loopback; the table
is what mysocketd would send for a Gateway (edge/README.md, "Route tables").
"""

import http.client
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edge import routetables
from edgetest_helpers import forward_argv

pytestmark = pytest.mark.timeout(120)


class Echo:
    """A backend that answers JSON: its name, the method, the path and the headers it got."""

    def __init__(self, name):
        outer = name

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = json.dumps({"name": outer, "method": self.command, "path": self.path,
                                   "headers": {k.lower(): ", ".join(self.headers.get_all(k))
                                               for k in set(self.headers.keys())}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend-Header", "from-app")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo():
    made = []

    def make(name):
        made.append(Echo(name))
        return made[-1]
    yield make
    for e in made:
        e.close()


def to(*backends, filters=()):
    """An action: (backend, weight) pairs, request/response filters."""
    return {"filters": list(filters),
            "backends": [{"backend": b, "weight": w, "filters": []} for b, w in backends]}


def route(action, path=("PathPrefix", "/"), method="", headers=(), query=()):
    return {"hostname": "", "action": action,
            "match": {"path": {"type": path[0], "value": path[1]}, "method": method,
                      "headers": [{"name": n, "value": v, "type": "Exact"} for n, v in headers],
                      "query": [{"name": n, "value": v, "type": "Exact"} for n, v in query]}}


A, B, GHOST = "ns/a:80", "ns/b:80", "ns/ghost:80"

TABLE = {
    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "", "certificates": [],
                   "routes": [
                       route(1, path=("Exact", "/exact")),
                       route(1, headers=[("x-canary", "yes")]),
                       route(1, query=[("v", "2")]),
                       route(1, path=("PathPrefix", "/m"), method="POST"),
                       route(2, path=("PathPrefix", "/old")),
                       route(3, path=("PathPrefix", "/api")),
                       route(4, path=("PathPrefix", "/split")),
                       route(5, path=("PathPrefix", "/ghost")),
                       route(6, path=("PathPrefix", "/invalid")),
                       route(0, path=("PathPrefix", "/a")),
                   ]}],
    "actions": [
        to((A, 1)),
        to((B, 1)),
        to(filters=[{"type": "RequestRedirect", "path": {"type": "ReplacePrefixMatch", "value": "/new"},
                     "statusCode": 301}]),
        to((A, 1), filters=[
            {"type": "URLRewrite", "path": {"type": "ReplacePrefixMatch", "value": "/v1"}},
            {"type": "RequestHeaderModifier", "set": [{"name": "X-Set", "value": "edge"}],
             "add": [{"name": "X-Added", "value": "one"}], "remove": ["X-Drop"]},
            {"type": "ResponseHeaderModifier", "set": [{"name": "X-Resp", "value": "edge"}],
             "remove": ["X-Backend-Header"]}]),
        to((A, 1), (B, 3)),
        to((GHOST, 1)),
        to(("", 1)),
    ],
}


class Gateway:
    """A socket with one tunnel per backend, each connected by its own ssh -R."""

    def __init__(self, edge, account, ssh, backends):
        self.edge, self.token = edge, account.token
        self.sock = edge.api("POST", "/socket", {"name": "gw", "socket_type": "http"}, token=self.token).body
        self.base = "/socket/{}".format(self.sock["socket_id"])
        self.procs = {}
        for name, server in backends.items():
            t = edge.api("POST", self.base + "/tunnel", {"backend": name}, token=self.token).body
            assert t["backend"] == name, t
            self.procs[name] = ssh.start(forward_argv(edge, account, t["local_port"], server.port))
            edge.wait_forward(t["local_port"])

    def put(self, table):
        return self.edge.api("PUT", self.base + "/routes", {"routes": table}, token=self.token)

    def request(self, path, method="GET", headers=None, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection(self.edge.host, self.edge.http_port, timeout=10)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None,
                         headers={"Host": self.sock["dnsname"], **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
            body = json.loads(raw) if resp.getheader("Content-Type") == "application/json" else raw.decode()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            if own:
                conn.close()


@pytest.fixture
def gateway(edge, account, ssh, echo):
    gw = Gateway(edge, account, ssh, {A: echo("a"), B: echo("b")})
    resp = gw.put(TABLE)
    assert resp.status == 200, resp.body
    assert resp.body["routes_digest"] == routetables.digest(TABLE)
    return gw


@pytest.mark.parametrize("path, method, headers, backend, seen_path", [
    ("/a/x", "GET", {}, "a", "/a/x"),
    ("/exact", "GET", {}, "b", "/exact"),
    ("/exact/not", "GET", {}, None, None),           # Exact is exact: no route (the table ends at /a)
    ("/a/x", "GET", {"X-Canary": "yes"}, "b", "/a/x"),
    ("/a/x?v=2", "GET", {}, "b", "/a/x?v=2"),
    ("/m/1", "POST", {}, "b", "/m/1"),
    ("/m/1", "GET", {}, None, None),                 # the method is part of the match
])
def test_matches(gateway, path, method, headers, backend, seen_path):
    status, resp_headers, body = gateway.request(path, method, headers)
    if backend is None:
        assert (status, resp_headers.get("mysocket-edge")) == (404, "no-route"), body
        return
    assert status == 200, body
    assert (body["name"], body["method"], body["path"]) == (backend, method, seen_path)


def test_redirect_rewrite_and_header_filters(gateway):
    status, headers, _ = gateway.request("/old/page?q=1")
    assert (status, headers["mysocket-edge"]) == (301, "redirect")
    assert headers["location"] == "http://{}/new/page?q=1".format(gateway.sock["dnsname"])

    status, headers, body = gateway.request("/api/items", headers={"X-Drop": "secret", "X-Added": "zero"})
    assert status == 200 and body["name"] == "a" and body["path"] == "/v1/items"
    assert body["headers"]["x-set"] == "edge" and "x-drop" not in body["headers"]
    assert body["headers"]["x-added"] == "zero, one"                 # add appends, set replaces
    assert headers["x-resp"] == "edge" and "x-backend-header" not in headers


def test_weights_split_the_traffic(gateway):
    counts = {"a": 0, "b": 0}
    for _ in range(400):
        status, _, body = gateway.request("/split")
        assert status == 200
        counts[body["name"]] += 1
    # 1:3 over 400 requests: b's share is 0.75 with a standard deviation of ~0.022.
    assert 0.62 < counts["b"] / 400 < 0.88, counts


def test_a_backend_without_tunnel_or_invalid_gets_500(gateway):
    for path in ("/ghost", "/invalid"):
        status, headers, _ = gateway.request(path)
        assert (status, headers["mysocket-edge"]) == (500, "no-backend"), path


def named(answer):
    """(status, the backend's name) of a request's answer, or (status, the edge's reason) of the edge's own."""
    status, headers, body = answer
    return status, body["name"] if isinstance(body, dict) else headers.get("mysocket-edge")


def test_a_backend_without_tunnel_gives_its_share_to_the_rule_s_others(gateway):
    table = json.loads(json.dumps(TABLE))
    table["actions"][5] = to((GHOST, 1), (B, 1))       # /ghost: half to a backend nobody serves
    assert gateway.put(table).status == 200
    assert {named(gateway.request("/ghost")) for _ in range(40)} == {(200, "b")}


def test_a_silently_dead_backend_gives_its_share_to_the_others_within_the_request(edge, account, ssh, echo):
    """Its ssh client frozen (no FIN, no RST): a request drawn for it fails to open a channel there, nothing
    was sent, so the rule's other backend answers it; the visitor never sees an error."""
    gw = Gateway(edge, account, ssh, {A: echo("a"), B: echo("b")})
    table = {"listeners": TABLE["listeners"][:1], "actions": [to((A, 1), (B, 1))]}
    table["listeners"] = [dict(TABLE["listeners"][0], routes=[route(0)])]
    assert gw.put(table).status == 200
    assert {gw.request("/")[2]["name"] for _ in range(30)} == {"a", "b"}
    frozen = gw.procs[A]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        answers = {named(gw.request("/x")) for _ in range(30)}
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert answers == {(200, "b")}


def test_an_edit_takes_effect_on_the_next_request_of_an_open_connection(gateway):
    conn = http.client.HTTPConnection(gateway.edge.host, gateway.edge.http_port, timeout=10)
    try:
        assert gateway.request("/a/1", conn=conn)[2]["name"] == "a"
        swapped = json.loads(json.dumps(TABLE))
        swapped["actions"][0] = to((B, 1))
        assert gateway.put(swapped).status == 200      # answered once the data plane applied it
        status, _, body = gateway.request("/a/2", conn=conn)   # same keep-alive connection
        assert status == 200 and body["name"] == "b"
        assert gateway.put(None).body["routes_digest"] == ""
        status, _, body = gateway.request("/anything", conn=conn)   # no table: any tunnel, as before
        assert status == 200 and body["name"] in ("a", "b")
    finally:
        conn.close()


@pytest.mark.parametrize("table, words", [
    ({"listeners": [{"name": "l", "port": 80, "protocol": "HTTP", "routes": [
        {"match": {"path": {"type": "RegularExpression", "value": "(["}}, "action": 0}]}],
      "actions": [to((A, 1))]}, "route table refused"),
    ({"listeners": [{"name": "l", "port": 8080, "protocol": "HTTP", "routes": []}], "actions": []},
     "this edge serves HTTP on 80"),
    ({"listeners": [], "actions": [to(*[("ns/x:{}".format(i), 1) for i in range(17)])]}, "at most 16 backends"),
    ("not a table", "JSON object"),
])
def test_a_table_the_edge_cannot_serve_is_refused_whole(gateway, table, words):
    resp = gateway.put(table)
    assert resp.status == 422 and words in resp.body["error_message"], resp.body
    got = gateway.edge.api("GET", gateway.base, token=gateway.token).body
    assert got["routes_digest"] == routetables.digest(TABLE)         # the old table stays


def test_tables_are_for_http_sockets_only(edge, account):
    sock = edge.api("POST", "/socket", {"name": "db", "socket_type": "tcp"}, token=account.token).body
    resp = edge.api("PUT", "/socket/{}/routes".format(sock["socket_id"]), {"routes": TABLE}, token=account.token)
    assert resp.status == 400 and "http and https sockets" in resp.body["error_message"]
