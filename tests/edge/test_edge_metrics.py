"""The edge's metrics move with real traffic through a real tunnel (the real OpenSSH client).

One edge for the module, started with ``--metrics-listen``; every figure is read as
Prometheus reads it (prometheus_client's own text parser), from the operator's listener,
and the data plane's own ``GET /metrics`` on its control socket is checked to be what that
listener merges. Each test uses its own account and sockets, so its series are its own.
"""

import http.client
import socket
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.grpctesting import UNARY, EchoServer, edge_channel
from edge.testing import EdgeProcess, pattern_bytes
from edgetest_helpers import forward_argv, make_account, new_socket

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """The module's edge, with its metrics listener (the suite's default edge has none)."""
    with EdgeProcess(tmp_path_factory.mktemp("edge"), admin=True,
                     extra_args=("--metrics-listen", "127.0.0.1:0")) as proc:
        yield proc


def scrape_text(text: str) -> dict:
    """{(sample name, ((label, value), ...)): value} of one scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(edge) -> dict:
    with urllib.request.urlopen(edge.metrics_url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return scrape_text(resp.read().decode())


def value(samples: dict, name: str, **labels) -> float:
    """The sample's value; 0 when it is absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def of_socket(samples: dict, socket_id: str) -> list:
    return sorted(k for k in samples if ("socket_id", socket_id) in k[1])


def request(edge, host: str, method: str = "GET", path: str = "/", body: bytes = None):
    """(status, Mysocket-Edge header, body) of one request on its own connection."""
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Mysocket-Edge"), resp.read()
    finally:
        conn.close()


def test_traffic_tunnels_and_a_deleted_socket(edge, tmp_path, ssh, backend):
    acct = make_account(edge, tmp_path)
    sock = new_socket(edge, acct)
    sid, host, port = sock["socket_id"], sock["dnsname"], sock["tunnels"][0]["local_port"]
    by_edge = dict(socket_id=sid, answered_by="edge", reason="no-tunnel", code_class="5xx")
    by_app = dict(socket_id=sid, answered_by="app", reason="", code_class="2xx")

    # No tunnel yet: the edge answers 502 no-tunnel, and says so in the metrics.
    status, reason, edge_body = request(edge, host)
    assert (status, reason) == (502, "no-tunnel")
    m = scrape(edge)
    assert value(m, "mysocket_edge_requests_total", **by_edge) == 1
    assert value(m, "mysocket_edge_requests_total", **by_app) == 0
    assert value(m, "mysocket_edge_tunnels", socket_id=sid) == 0
    assert value(m, "mysocket_edge_account_connections", account_id=acct.user["user_id"]) == 0

    # A tunnel comes up: the gauge and the connects counter move.
    proc = ssh.start(forward_argv(edge, acct, port, backend("m1").port))
    edge.wait_forward(port)
    m = scrape(edge)
    assert value(m, "mysocket_edge_tunnels", socket_id=sid) == 1
    assert value(m, "mysocket_edge_tunnel_connects_total", socket_id=sid) == 1
    assert value(m, "mysocket_edge_tunnel_drops_total", socket_id=sid) == 0

    # The app answers: counted as the app's, bodies counted byte for byte both ways.
    upload = b"x" * 5000
    assert request(edge, host, path="/bytes/1000")[0::2] == (200, pattern_bytes(1000))
    status, reason, echoed = request(edge, host, "POST", "/", upload)
    assert (status, reason, echoed) == (200, None, upload)
    m = scrape(edge)
    assert value(m, "mysocket_edge_requests_total", **by_app) == 2
    assert value(m, "mysocket_edge_requests_total", **by_edge) == 1
    assert value(m, "mysocket_edge_bytes_total", socket_id=sid, direction="in") == len(upload)
    assert value(m, "mysocket_edge_bytes_total", socket_id=sid, direction="out") == \
        len(edge_body) + 1000 + len(upload)
    assert value(m, "mysocket_edge_request_duration_seconds_count", socket_id=sid) == 3
    assert value(m, "mysocket_edge_connections_total", socket_id=sid, front="http") == 3
    assert value(m, "mysocket_edge_active_connections", socket_id=sid) == 0   # all released

    # The client goes away: the gauge goes down, the drop is counted.
    proc.terminate()
    proc.wait(10)
    edge.wait_forward(port, present=False)
    m = scrape(edge)
    assert value(m, "mysocket_edge_tunnels", socket_id=sid) == 0
    assert value(m, "mysocket_edge_tunnel_drops_total", socket_id=sid) == 1

    # The socket is deleted: every series of it is gone (bounded memory), others stay.
    assert edge.api("DELETE", "/socket/{}".format(sid), token=acct.token).status == 204
    m = scrape(edge)
    assert of_socket(m, sid) == []
    assert value(m, "mysocket_edge_account_connections", account_id=acct.user["user_id"]) == 0


def test_tcp_connections_and_bytes(edge, tmp_path, ssh, backend):
    """A tcp socket's connections are counted on the tcp front, their bytes as spliced."""
    acct = make_account(edge, tmp_path)
    sock = new_socket(edge, acct, socket_type="tcp")
    sid, [public], port = sock["socket_id"], sock["socket_tcp_ports"], sock["tunnels"][0]["local_port"]
    ssh.start(forward_argv(edge, acct, port, backend("tcp").port))
    edge.wait_forward(port)
    sent = b"GET /t HTTP/1.0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", public), timeout=10) as conn:
        conn.sendall(sent)
        got = b""
        while chunk := conn.recv(65536):
            got += chunk
    assert got.endswith(b"tcp /t\n")
    m = scrape(edge)
    # the splice ends (and counts its last bytes) a moment after the visitor saw EOF
    for _ in range(100):
        if value(m, "mysocket_edge_active_connections", socket_id=sid) == 0:
            break
        m = scrape(edge)
    assert value(m, "mysocket_edge_connections_total", socket_id=sid, front="tcp") == 1
    assert value(m, "mysocket_edge_bytes_total", socket_id=sid, direction="in") == len(sent)
    assert value(m, "mysocket_edge_bytes_total", socket_id=sid, direction="out") == len(got)
    assert value(m, "mysocket_edge_requests_total", socket_id=sid, answered_by="app", reason="",
                 code_class="2xx") == 0        # a tcp socket has connections, not requests


def test_grpc_calls_over_http2_are_requests_of_the_app(edge, tmp_path, ssh):
    """gRPC (TLS and HTTP/2 to the edge, h2c to the app): each call is one request the app
    answered, whatever its gRPC status (that is in the trailers), and its bytes are counted."""
    acct = make_account(edge, tmp_path)
    sock = new_socket(edge, acct, upstream_protocol="h2c")
    sid, port = sock["socket_id"], sock["tunnels"][0]["local_port"]
    with EchoServer() as echo:
        ssh.start(forward_argv(edge, acct, port, echo.port))
        edge.wait_forward(port)
        with edge_channel(edge, sock["dnsname"]) as channel:
            unary = channel.unary_unary(UNARY)
            assert unary(b"hello", timeout=30) == b"unary:hello"
            with pytest.raises(grpc.RpcError):
                unary(b"fail", timeout=30)              # NOT_FOUND, in the trailers of a 200
    m = scrape(edge)
    assert value(m, "mysocket_edge_requests_total", socket_id=sid, answered_by="app", reason="",
                 code_class="2xx") == 2
    assert value(m, "mysocket_edge_connections_total", socket_id=sid, front="https") == 1
    assert value(m, "mysocket_edge_bytes_total", socket_id=sid, direction="in") > len(b"hello")
    assert value(m, "mysocket_edge_bytes_total", socket_id=sid, direction="out") > len(b"unary:hello")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("dataplane", timeout=10)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def test_the_control_socket_serves_what_the_listener_merges(edge):
    """GET /metrics on the data plane's control socket (what the dashboard reads) is the
    data plane's part of the operator's listener; the listener adds the control plane's own."""
    conn = _UnixHTTPConnection(str(edge.data_dir / "dataplane.sock"))
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        plane = {name for name, _ in scrape_text(resp.read().decode())}
    finally:
        conn.close()
    merged = {name for name, _ in scrape(edge)}
    assert "mysocket_edge_certificate_expiry_timestamp_seconds" in plane
    assert "mysocket_edge_dataplane_process_resident_memory_bytes" in plane
    assert plane <= merged
    control = merged - plane
    assert {"mysocket_edge_info", "mysocket_edge_dataplane_up", "mysocket_edge_api_requests_total",
            "mysocket_edge_account_sockets", "mysocket_edge_control_process_resident_memory_bytes"} <= control
    # neither the API port nor a public front serves them
    assert edge.api("GET", "/metrics").status == 404
    assert request(edge, "nobody.edge.localhost", path="/metrics")[:2] == (404, "unknown-host")
