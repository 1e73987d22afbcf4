"""Attackers, victims, the app behind them and the data plane's figures, for the abuse suite.

Every attacker and every victim connects from its own loopback address (the
client socket is bound to 127.x.y.z before it connects: the test's network
namespace routes all of 127.0.0.0/8 to lo), so the edge sees them as the
different visitors they would be on the internet. The app runs in this
process and counts what it holds (request bodies being read, upgraded
connections, tcp connections), which is how a test knows that an attack has
landed without sleeping. The data plane's memory is its kernel high-water mark
(VmHWM, reset per attack through /proc/PID/clear_refs); its file limit is
lowered with prlimit(2), relative to what it holds, and restored afterwards.
"""

import contextlib
import http.client
import json
import os
import resource
import selectors
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024        # the default 5 drops connections of a burst
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    request_queue_size = 1024
    daemon_threads = True


class App:
    """The app behind the attacked sockets. GET answers ``app <path>``; POST echoes its
    body once it has all of it; ``/forge?status=N`` answers N and speaks as the edge
    (``Mysocket-Edge: no-tunnel``); ``/headers`` answers the request headers it got as
    JSON; an ``Upgrade: websocket`` GET is switched and echoed in upper case."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held = {"body": 0, "upgrade": 0}
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    return app._upgraded(self)
                if self.path.startswith("/forge"):
                    status = int(self.path.partition("status=")[2] or 200)
                    return self._answer(status, b"the app's own answer\n",
                                        [("Mysocket-Edge", "no-tunnel"),
                                         ("mysocket-edge", "unknown-host")])
                if self.path == "/headers":
                    return self._answer(200, json.dumps(dict(self.headers.items())).encode())
                return self._answer(200, "app {}\n".format(self.path).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                with app.holding("body"):
                    data = self.rfile.read(length)
                if len(data) < length:           # the edge ended it: nothing to answer
                    self.close_connection = True
                    return
                self._answer(200, data)

            def _answer(self, status, body, extra=()):
                self.send_response(status)
                for name, value in extra:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @contextlib.contextmanager
    def holding(self, kind):
        with self._lock:
            self._held[kind] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[kind] -= 1

    def held(self, kind) -> int:
        with self._lock:
            return self._held[kind]

    def _upgraded(self, handler):
        handler.send_response(101)
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        with self.holding("upgrade"):
            try:
                while data := handler.connection.recv(4096):
                    handler.connection.sendall(data.upper())
            except OSError:
                pass

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class TcpEcho:
    """The app behind a tcp socket: echoes, and counts the connections it holds."""

    def __init__(self):
        self.held = 0
        lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with lock:
                    outer.held += 1
                try:
                    while data := self.request.recv(4096):
                        self.request.sendall(data)
                except OSError:
                    pass
                finally:
                    with lock:
                        outer.held -= 1

        self._server = _TcpServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def connect_from(source: str, port: int, timeout: float = 10) -> socket.socket:
    """A TCP connection to the edge on 127.0.0.1:port from the loopback address source."""
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def address(group: int, n: int) -> str:
    """The n-th loopback address of a group (one group per attack or victim kind)."""
    return "127.{}.{}.{}".format(group, n // 250, n % 250 + 1)


def answers(socks, until, deadline: float = 30) -> dict:
    """Read the answer head of each socket until until(answers) is true or the deadline
    passes: {socket: (status, Mysocket-Edge value or None)}; (0, None) for a socket the
    edge closed without an answer."""
    got, heads = {}, {s: b"" for s in socks}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        end = time.monotonic() + deadline
        while not until(got) and time.monotonic() < end and heads:
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                heads[s] += chunk
                if not chunk or b"\r\n\r\n" in heads[s]:
                    got[s] = parse_head(heads.pop(s))
                    sel.unregister(s)
    return got


def parse_head(raw: bytes) -> tuple:
    if not raw.startswith(b"HTTP/"):
        return (0, None)
    lines = raw.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
    marker = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "mysocket-edge":
            marker = value.strip()
    return (int(lines[0].split()[1]), marker)


def count_ended(socks, deadline: float) -> int:
    """How many of socks the edge closes (EOF or reset) before the deadline, reading
    whatever else comes; all are watched at once."""
    left, closed = set(socks), 0
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        end = time.monotonic() + deadline
        while left and time.monotonic() < end:
            for key, _ in sel.select(timeout=0.1):
                try:
                    gone = not key.fileobj.recv(65536)
                except OSError:
                    gone = True
                if gone:
                    sel.unregister(key.fileobj)
                    left.discard(key.fileobj)
                    closed += 1
    return closed


@contextlib.contextmanager
def trickle(socks, every: float):
    """Send one byte on each socket every `every` seconds until the block ends."""
    stop = threading.Event()

    def run():
        while not stop.wait(every):
            for s in socks:
                try:
                    s.send(b"x")
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def visit(edge, host: str, source: str, path: str = "/", headers=None, port=None,
          timeout: float = 20) -> tuple:
    """A visitor's GET from its own address: (status, Mysocket-Edge, body, all headers);
    (0, error, "", []) when the edge did not answer in time."""
    conn = http.client.HTTPConnection(edge.host, port or edge.http_port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return (resp.status, resp.getheader("Mysocket-Edge"), resp.read().decode(),
                resp.getheaders())
    except OSError as exc:
        return (0, type(exc).__name__, "", [])
    finally:
        conn.close()


def closing(socks):
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


class Plane:
    """The edge's Go data plane as a process: its memory, CPU and file limit."""

    def __init__(self, edge):
        [self.pid] = [p.pid for p in psutil.Process(edge.pid).children()]

    def reset_peak(self):
        with open("/proc/{}/clear_refs".format(self.pid), "w") as f:
            f.write("5")          # the peak RSS (VmHWM) starts again from the current RSS

    def peak_mib(self) -> float:
        with open("/proc/{}/status".format(self.pid)) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM for {}".format(self.pid))

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def open_files(self) -> int:
        return len(os.listdir("/proc/{}/fd".format(self.pid)))

    @contextlib.contextmanager
    def file_limit(self, headroom: int):
        """The data plane's soft RLIMIT_NOFILE lowered to what it holds + headroom (the
        hard limit stays: raising it again would need CAP_SYS_RESOURCE)."""
        saved = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
        limit = self.open_files() + headroom
        resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (limit, saved[1]))
        try:
            yield limit
        finally:
            resource.prlimit(self.pid, resource.RLIMIT_NOFILE, saved)

    def alive(self) -> bool:
        return psutil.pid_exists(self.pid) and \
            psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE


@contextlib.contextmanager
def figure(figures: list, attack: str, plane: Plane):
    """Record the attack's figures (peak memory, whatever the test adds) even if it fails."""
    row = {"attack": attack}
    figures.append(row)
    plane.reset_peak()
    try:
        yield row
    finally:
        row["peak_rss_mib"] = round(plane.peak_mib(), 1)


def print_figures(figures: list) -> None:
    lines = ["", "abuse suite figures (data plane):"]
    for row in figures:
        extra = ", ".join("{}={}".format(k, v) for k, v in row.items()
                          if k not in ("attack", "peak_rss_mib"))
        lines.append("  {:<44} peak RSS {:>7} MiB  {}".format(
            row["attack"], row.get("peak_rss_mib"), extra))
    print("\n".join(lines), flush=True)
    path = os.environ.get("EDGE_ABUSE_FIGURES")
    if path:
        with open(path, "a") as f:
            for row in figures:
                f.write(json.dumps(row) + "\n")
