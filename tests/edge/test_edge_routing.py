"""Per-request routing and auth, the edge's own answers, upgrades, streaming, failover."""

import http.client
import itertools
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgetest_helpers import forward_argv, new_socket

pytestmark = pytest.mark.timeout(120)

ALICE_AUTH = "Basic YWxpY2U6czNjcmV0"          # alice:s3cret


class Recorder:
    """A backend that records (Host, Authorization, path) of every request it gets."""

    def __init__(self, name):
        self.name, self.seen = name, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append((self.headers.get("Host"), self.headers.get("Authorization"),
                                   self.path))
                status = 502 if self.path == "/app-502" else 200
                body = "{} {}\n".format(outer.name, self.path).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made = []

    def make(name):
        made.append(Recorder(name))
        return made[-1]
    yield make
    for r in made:
        r.close()


def connect(edge, account, ssh, sock, port_of_backend, index=0):
    port = sock["tunnels"][index]["local_port"] if index < len(sock["tunnels"]) else index
    proc = ssh.start(forward_argv(edge, account, port, port_of_backend))
    edge.wait_forward(port)
    return proc


def test_two_tenants_on_one_keepalive_connection_in_every_order(edge, account, new_account,
                                                                 ssh, recorder):
    """A pooling proxy in front sends Alice's and Bob's requests down one
    connection: each goes to its own socket, and Bob's basic auth is checked
    on every request, whatever came before it."""
    bob = new_account()
    alice_sock = new_socket(edge, account)
    bob_sock = new_socket(edge, bob, protected_socket=True, protected_username="alice",
                          protected_password="s3cret")
    alice_be, bob_be = recorder("alice"), recorder("bob")
    connect(edge, account, ssh, alice_sock, alice_be.port)
    connect(edge, bob, ssh, bob_sock, bob_be.port)
    a, b = alice_sock["dnsname"], bob_sock["dnsname"]
    kinds = {
        "alice": (a, {}, 200, "alice"),
        "alice+bob's password": (a, {"Authorization": ALICE_AUTH}, 200, "alice"),
        "bob without password": (b, {}, 401, None),
        "bob with password": (b, {"Authorization": ALICE_AUTH}, 200, "bob"),
        "bob, wrong password": (b, {"Authorization": "Basic YWxpY2U6eA=="}, 401, None),
    }
    orders = list(itertools.permutations(kinds, 3)) + [tuple(kinds)]
    for order in orders:
        conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
        try:
            for kind in order:
                host, headers, status, who = kinds[kind]
                conn.request("GET", "/" + kind.replace(" ", "_"), headers={"Host": host, **headers})
                resp = conn.getresponse()
                body = resp.read().decode()
                assert resp.status == status, (order, kind, body)
                if who:
                    assert body.startswith(who + " "), (order, kind, body)
                    assert resp.getheader("Mysocket-Edge") is None
                else:
                    assert resp.getheader("Mysocket-Edge") == "unauthorized"
        finally:
            conn.close()
    assert alice_be.seen and bob_be.seen
    assert {host for host, _, _ in alice_be.seen} == {a}
    assert {host for host, _, _ in bob_be.seen} == {b}
    assert {path for _, _, path in bob_be.seen} == {"/bob_with_password"}
    assert all(auth is None for _, auth, _ in bob_be.seen)     # the edge's password stays


def test_pipelined_requests_are_routed_one_by_one(edge, account, new_account, ssh, recorder):
    bob = new_account()
    s1, s2 = new_socket(edge, account), new_socket(edge, bob)
    r1, r2 = recorder("one"), recorder("two")
    connect(edge, account, ssh, s1, r1.port)
    connect(edge, bob, ssh, s2, r2.port)
    burst = b"".join("GET /{} HTTP/1.1\r\nHost: {}\r\n\r\n".format(i, host).encode()
                     for i, host in enumerate([s1["dnsname"], s2["dnsname"], "nope.edge.localhost",
                                               s1["dnsname"]]))
    with socket.create_connection((edge.host, edge.http_port), timeout=10) as conn:
        conn.sendall(burst + "GET /4 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n".format(
            s2["dnsname"]).encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    text = data.decode()
    order = [line.split()[0] + line.split()[1] for line in text.splitlines()
             if line.startswith(("one /", "two /"))]
    assert order == ["one/0", "two/1", "one/3", "two/4"]
    assert text.count("HTTP/1.1 404") == 1 and "Mysocket-Edge: unknown-host" in text


def answer(edge, host, raw=None):
    """(status, Mysocket-Edge header, body) of one request; raw: bytes sent as they are."""
    if raw is not None:
        with socket.create_connection((edge.host, edge.http_port), timeout=10) as conn:
            conn.sendall(raw)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.decode().partition("\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.splitlines()[1:])
        return int(head.split()[1]), fields.get("Mysocket-Edge"), body
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
    try:
        conn.request("GET", "/app-502", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Mysocket-Edge"), resp.read().decode()
    finally:
        conn.close()


def test_the_edges_own_answers_are_marked_and_the_apps_are_not(edge, account, ssh, recorder):
    unconnected = new_socket(edge, account)
    assert answer(edge, unconnected["dnsname"])[:2] == (502, "no-tunnel")
    assert answer(edge, "nobody.edge.localhost")[:2] == (404, "unknown-host")
    tcp = new_socket(edge, account, socket_type="tcp")
    assert answer(edge, tcp["dnsname"])[:2] == (421, "misdirected")
    assert answer(edge, None, b"GET / HTTP/1.0\r\n\r\n")[:2] == (400, "bad-request")
    big = "GET / HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\nConnection: close\r\n\r\n".format(
        unconnected["dnsname"], "x" * 70000).encode()
    assert answer(edge, None, big)[:2] == (431, "too-large")
    app = new_socket(edge, account)
    connect(edge, account, ssh, app, recorder("app").port)
    status, marker, body = answer(edge, app["dnsname"])          # the app's own 502
    assert (status, marker, body) == (502, None, "app /app-502\n")


def test_websocket_upgrade_and_streaming_pass_through(edge, account, ssh):
    release = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            if b"Upgrade: websocket" in head:
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\n\r\n")
                while data := conn.recv(4096):
                    conn.sendall(data.upper())
            else:                                   # a chunked stream, one part at a time
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"6\r\nfirst\n\r\n")
                release.wait(30)
                conn.sendall(b"5\r\nlast\n\r\n0\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        sock = new_socket(edge, account)
        connect(edge, account, ssh, sock, listener.getsockname()[1])
        with socket.create_connection((edge.host, edge.http_port), timeout=10) as conn:
            conn.sendall("GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\n\r\n".format(sock["dnsname"]).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            for word in (b"ping", b"again"):
                conn.sendall(word)
                assert conn.recv(4096) == word.upper()
        conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
        conn.request("GET", "/stream", headers={"Host": sock["dnsname"]})
        resp = conn.getresponse()
        assert resp.read1(100) == b"first\n"        # before the app has sent the rest
        release.set()
        assert resp.read() == b"last\n"
        conn.close()
    finally:
        release.set()
        listener.close()


def two_tunnels(edge, account):
    sock = new_socket(edge, account)
    extra = edge.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {},
                     token=account.token).body
    return sock, [sock["tunnels"][0]["local_port"], extra["local_port"]]


def start_forward(edge, account, ssh, port, target):
    proc = ssh.start(forward_argv(edge, account, port, target))
    edge.wait_forward(port)
    return proc


def dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tunnel_whose_target_refuses_is_skipped_and_set_aside(edge, account, ssh, recorder):
    sock, ports = two_tunnels(edge, account)
    start_forward(edge, account, ssh, ports[0], dead_port())
    start_forward(edge, account, ssh, ports[1], recorder("live").port)
    answers = [edge.get(sock["dnsname"], "/{}".format(i)) for i in range(12)]
    assert answers == [(200, "live /{}\n".format(i)) for i in range(12)]
    assert "local_port={} set aside".format(ports[0]) in edge.log_tail(400)


def test_a_frozen_session_never_holds_requests_while_another_tunnel_lives(edge, account, ssh,
                                                                          recorder):
    """SIGSTOP: no FIN, no RST. Requests go to the live tunnel; the keepalives
    close the frozen session within a few seconds."""
    sock, ports = two_tunnels(edge, account)
    frozen = start_forward(edge, account, ssh, ports[0], recorder("frozen").port)
    start_forward(edge, account, ssh, ports[1], recorder("live").port)
    frozen.send_signal(signal.SIGSTOP)
    try:
        answers = {edge.get(sock["dnsname"], "/")[0] for _ in range(8)}
        assert answers == {200}
        edge.wait_forward(ports[0], present=False, timeout=20)
        assert "stopped answering keepalives" in edge.log_tail(400)
    finally:
        frozen.send_signal(signal.SIGCONT)


def test_only_when_every_tunnel_fails_the_visitor_gets_the_edges_502(edge, account, ssh):
    sock, ports = two_tunnels(edge, account)
    for port in ports:
        start_forward(edge, account, ssh, port, dead_port())
    status, marker, body = answer(edge, sock["dnsname"])
    assert (status, marker) == (502, "no-tunnel")
    assert "could not reach its target" in body


def test_a_keepalive_visitor_pinned_to_a_tunnel_that_freezes_moves_on(edge, account, ssh,
                                                                       recorder):
    """The visitor's connection keeps its upstream channel; when that tunnel's
    session freezes, its next request is served by the other tunnel."""
    sock, ports = two_tunnels(edge, account)
    first = start_forward(edge, account, ssh, ports[0], recorder("first").port)
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=30)
    try:
        conn.request("GET", "/a", headers={"Host": sock["dnsname"]})
        assert conn.getresponse().read() == b"first /a\n"
        start_forward(edge, account, ssh, ports[1], recorder("second").port)
        first.send_signal(signal.SIGSTOP)
        for path in ("/b", "/c"):
            conn.request("GET", path, headers={"Host": sock["dnsname"]})
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, "second {}\n".format(path).encode())
    finally:
        first.send_signal(signal.SIGCONT)
        conn.close()
