"""One visitor must never take anyone off the air (issue 19): the edge under attack.

Each test is one attack against the real edge over real sockets, every attacker
from loopback addresses of its own; meanwhile a visitor of another socket of the
attacked account and a visitor of another account must still get their answers,
the data plane's peak memory is recorded (and bounded, generously), and nothing
is lost: every tunnel stays connected, the data plane is the same process.

One edge serves the whole module (the password flood runs last: on an edge without
bounds it takes every tunnel down, and the memory it took is not given back): account X with the attacked sockets (A: the
app, B: another of X's sockets, P: basic auth, T: tcp) and account Y with C. Its
quota is 100 concurrent connections per account; the new settings are given by
their environment variables, so the same suite runs against an older edge (which
ignores them) to show what it did before. Figures are printed at the end of the
module (`-s`) and appended as JSON lines to $EDGE_ABUSE_FIGURES when it is set.
"""

import base64
import http.client
import threading
import time
from dataclasses import dataclass

import pytest

from abuse_helpers import (App, Plane, TcpEcho, address, answers, closing, connect_from,
                           count_ended, figure, print_figures, trickle, visit)
from edge.testing import EdgeProcess
from edgetest_helpers import Account, SshClients, forward_argv, make_account, new_socket

pytestmark = pytest.mark.timeout(240)

QUOTA = 100                 # --connections-per-account of the module's edge
MEMORY_BOUND_MIB = 512      # the data plane's peak RSS under any attack (generous)
SETTINGS = {"EDGE_BODY_READ_TIMEOUT": "2", "EDGE_UPGRADE_IDLE_TIMEOUT": "2"}
ALICE = "Basic " + base64.b64encode(b"alice:s3cret").decode()


@dataclass
class World:
    x: Account
    y: Account
    sockets: dict           # name -> the socket as the API returned it
    app: App
    tcp: TcpEcho

    def host(self, name):
        return self.sockets[name]["dnsname"]


@pytest.fixture(scope="module")
def figures():
    rows = []
    yield rows
    print_figures(rows)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    limits = {"registrations_per_hour_per_address": 0, "logins_per_minute_per_address": 0,
              "auth_failures_per_minute": 20, "connections_per_account": QUOTA}
    with pytest.MonkeyPatch.context() as env:
        for name, value in SETTINGS.items():
            env.setenv(name, value)
        with EdgeProcess(tmp_path_factory.mktemp("abuse"), admin=True, limits=limits) as proc:
            yield proc


@pytest.fixture(scope="module")
def world(edge, tmp_path_factory):
    work = tmp_path_factory.mktemp("world")
    app, tcp, ssh = App(), TcpEcho(), SshClients(work)
    try:
        x, y = make_account(edge, work), make_account(edge, work)
        sockets = {"A": new_socket(edge, x), "B": new_socket(edge, x),
                   "P": new_socket(edge, x, protected_socket=True, protected_username="alice",
                                   protected_password="s3cret"),
                   "T": new_socket(edge, x, socket_type="tcp"), "C": new_socket(edge, y)}
        for name, sock in sockets.items():
            port = sock["tunnels"][0]["local_port"]
            ssh.start(forward_argv(edge, y if name == "C" else x, port,
                                   tcp.port if name == "T" else app.port))
            edge.wait_forward(port)
        yield World(x, y, sockets, app, tcp)
    finally:
        ssh.stop_all()
        app.close()
        tcp.close()


@pytest.fixture
def plane(edge, world, figures):
    """The data plane; after the attack it must be the same process, with every tunnel,
    and its peak memory during the attack under MEMORY_BOUND_MIB."""
    before = {(t["local_port"], t["peer"]) for t in edge.tunnels()}
    proc = Plane(edge)
    yield proc
    assert proc.alive(), "the data plane died"
    assert {(t["local_port"], t["peer"]) for t in edge.tunnels()} >= before, "a tunnel was lost"
    peak = figures[-1]["peak_rss_mib"]
    assert peak < MEMORY_BOUND_MIB, "the data plane peaked at {} MiB".format(peak)


def victims_are_served(edge, world, tag):
    """A visitor of B (the attacked account) and one of C (another account), each from an
    address of its own, get the app's answer."""
    got = [visit(edge, world.host(name), address(2, n), "/" + tag)[:3]
           for n, name in enumerate(("B", "C"))]
    assert got == [(200, None, "app /{}\n".format(tag))] * 2, got
    return got


def test_held_requests_from_one_visitor_leave_the_account_to_others(edge, world, plane, figures):
    head = "POST /held HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n\r\nx".format(
        world.host("A")).encode()
    with figure(figures, "held requests (120, one address)", plane) as row:
        socks = [connect_from(address(11, 0), edge.http_port) for _ in range(120)]
        try:
            for s in socks:
                s.sendall(head)
            with trickle(socks, every=0.5):           # alive: a byte every half second
                got = answers(socks, lambda got: len(got) + world.app.held("body") >= 120)
                row["held"] = world.app.held("body")
                row["refused"] = sorted({v for v in got.values()})
                row["victims"] = victims_are_served(edge, world, "held")
        finally:
            closing(socks)
    assert row["held"] <= QUOTA // 10


def test_slowloris_on_headers_from_one_address(edge, world, plane, figures):
    with figure(figures, "slowloris on headers (500, one address)", plane) as row, \
            plane.file_limit(headroom=300):
        heads, hellos = [], []
        try:
            for _ in range(400):                      # a request head, a byte a second
                heads.append(connect_from(address(12, 0), edge.http_port))
                heads[-1].sendall(b"GET / HTTP/1.1\r\nHost: ")
            for _ in range(100):                      # a TLS record header, then nothing
                hellos.append(connect_from(address(12, 0), edge.https_port))
                hellos[-1].sendall(b"\x16\x03\x01")
            with trickle(heads, every=1):
                row["victims"] = victims_are_served(edge, world, "slowloris")
        finally:
            closing(heads + hellos)


def test_slowloris_on_bodies_is_ended_but_a_slow_upload_is_not(edge, world, plane, figures):
    head = "POST /slow HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n\r\nx".format(
        world.host("A")).encode()
    upload = {}

    def slow_upload():                               # 2000 bytes, 100 every 0.2 s
        s = connect_from(address(2, 9), edge.http_port, timeout=30)
        try:
            s.sendall("POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: 2000\r\n"
                      "Connection: close\r\n\r\n".format(world.host("A")).encode())
            for i in range(20):
                s.sendall(bytes([65 + i]) * 100)
                time.sleep(0.2)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            upload["answer"] = data
        finally:
            s.close()

    with figure(figures, "slowloris on bodies (20, a byte / 3 s)", plane) as row:
        socks = [connect_from(address(13, 0), edge.http_port) for _ in range(20)]
        legit = threading.Thread(target=slow_upload, daemon=True)
        try:
            for s in socks:
                s.sendall(head)
            legit.start()
            with trickle(socks, every=3):
                row["victims"] = victims_are_served(edge, world, "bodies")
                row["ended"] = count_ended(socks, deadline=30)
            legit.join(30)
        finally:
            closing(socks)
    assert row["ended"] == len(socks), "the edge kept slow bodies open"
    body = b"".join(bytes([65 + i]) * 100 for i in range(20))
    assert upload.get("answer", b"").startswith(b"HTTP/1.1 200") and \
        upload["answer"].endswith(body), upload


def test_idle_websockets_are_bounded_and_closed_but_a_live_one_stays(edge, world, plane,
                                                                      figures):
    head = ("GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "\r\n").format(world.host("A")).encode()
    with figure(figures, "idle websockets (120, one address)", plane) as row:
        socks = [connect_from(address(14, 0), edge.http_port) for _ in range(120)]
        live = connect_from(address(2, 10), edge.http_port)
        try:
            for s in socks + [live]:
                s.sendall(head)
            got = answers(socks, lambda got: len(got) == len(socks))
            upgraded = [s for s, (status, _) in got.items() if status == 101]
            row["upgraded"], row["refused"] = len(upgraded), sorted(set(got.values()))
            row["victims"] = victims_are_served(edge, world, "ws")
            assert answers([live], lambda got: got)[live][0] == 101
            for i in range(10):                      # 5 s of pings: past the idle timeout
                live.sendall(b"ping%d" % i)
                assert live.recv(100) == b"PING%d" % i
                time.sleep(0.5)
            row["closed_idle"] = count_ended(upgraded, deadline=20)
        finally:
            closing(socks + [live])
    assert row["upgraded"] <= QUOTA // 10
    assert row["closed_idle"] == row["upgraded"], "idle upgraded connections stayed open"


def test_pre_auth_ssh_flood_from_one_address(edge, world, plane, figures, tmp_path):
    ssh = SshClients(tmp_path)
    with figure(figures, "pre-auth SSH (400, one address)", plane) as row, \
            plane.file_limit(headroom=300):
        socks = []
        try:
            for _ in range(400):
                socks.append(connect_from(address(16, 0), edge.ssh_port))
            row["victims"] = victims_are_served(edge, world, "ssh")
            tunnel = edge.api("POST", "/socket/{}/tunnel".format(world.sockets["C"]["socket_id"]),
                              {}, token=world.y.token).body
            ssh.start(forward_argv(edge, world.y, tunnel["local_port"], world.app.port))
            edge.wait_forward(tunnel["local_port"], timeout=30)   # a login in the flood
            row["login"] = "ok"
        finally:
            closing(socks)
            ssh.stop_all()


def test_the_app_cannot_speak_as_the_edge(edge, world, plane, figures):
    with figure(figures, "forged Mysocket-Edge from the app", plane) as row:
        for status in (200, 502):
            got = visit(edge, world.host("A"), address(2, 12), "/forge?status={}".format(status))
            assert got[:3] == (status, None, "the app's own answer\n")
            assert not [h for h, _ in got[3] if h.lower() == "mysocket-edge"], got[3]
        seen = visit(edge, world.host("A"), address(2, 12), "/headers",
                     {"Mysocket-Edge": "no-tunnel"})[2]
        assert "mysocket-edge" not in seen.lower(), seen     # nor from a visitor to the app
        row["forged"] = "stripped"


def test_emfile_on_the_tcp_front(edge, world, plane, figures):
    port = world.sockets["T"]["socket_tcp_ports"][0]
    kept = {}
    with figure(figures, "EMFILE on the TCP front", plane) as row:
        socks = []
        try:
            for n, name in enumerate(("B", "C")):     # visitors already connected
                kept[name] = keepalive_visitor(edge, world.host(name), address(2, 20 + n))
            with plane.file_limit(headroom=30) as limit:
                for n in range(40):                   # 8 addresses, 5 each: within every share
                    socks.append(connect_from(address(17, n % 8), port))
                    socks[-1].sendall(b"ping")
                wait_for(lambda: plane.open_files() >= limit, "the data plane to run out of files")
                cpu = plane.cpu_seconds()
                time.sleep(5)                          # the CPU it spends meanwhile
                row["cpu_s_in_5s"] = round(plane.cpu_seconds() - cpu, 2)
                row["victims"] = [ask(kept[name], world.host(name), "/emfile") for name in kept]
            echoed = sum(echo(s) for s in socks)      # the queued ones, once files are back
            row["echoed"] = echoed
            row["fresh"] = victims_are_served(edge, world, "after")
        finally:
            closing(socks)
            for conn in kept.values():
                conn.close()
    assert row["victims"] == [(200, "app /emfile\n")] * 2
    assert row["cpu_s_in_5s"] < 0.3, "the accept loop spun on EMFILE"
    assert echoed == len(socks), "connections queued during EMFILE were lost"


def test_wrong_password_flood_from_many_addresses(edge, world, plane, figures):
    with figure(figures, "wrong passwords (200, 40 addresses)", plane) as row:
        socks = []
        try:
            for n in range(200):
                s = connect_from(address(15, n % 40), edge.http_port, timeout=60)
                wrong = base64.b64encode("alice:wrong-{}".format(n).encode()).decode()
                s.sendall("GET /p HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\n\r\n"
                          .format(world.host("P"), wrong).encode())
                socks.append(s)
            row["victims"] = victims_are_served(edge, world, "flood")
            got = answers(socks, lambda got: len(got) == len(socks), deadline=120)
            row["answers"] = sorted({v for v in got.values()})
        finally:
            closing(socks)
        right = visit(edge, world.host("P"), address(2, 11), "/p", {"Authorization": ALICE})
    assert all(marker for _, marker in got.values()), "an answer to the flood was not the edge's"
    assert right[:3] == (200, None, "app /p\n")


def keepalive_visitor(edge, host, source):
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=20,
                                      source_address=(source, 0))
    assert ask(conn, host, "/first")[0] == 200
    return conn


def ask(conn, host, path):
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def echo(sock) -> bool:
    sock.settimeout(20)
    try:
        return sock.recv(100) == b"ping"
    except OSError:
        return False


def wait_for(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)
