"""Run the edge as a real subprocess for tests, the demo and benchmarks.

    from edge.testing import EdgeProcess, HttpBackend, ssh_keygen

    with EdgeProcess(tmp_path, admin=True) as edge:
        pub = ssh_keygen(tmp_path / "id_ed25519")
        user = edge.register("a@example.com", "pw", pub)
        token = edge.login("a@example.com", "pw")
        sock = edge.api("POST", "/connect", {"name": "x"}, token=token).body
        argv = edge.ssh_argv(tmp_path / "id_ed25519", user["user_name"],
                             options=["-N", "-R", "{}:127.0.0.1:{}".format(port, backend)])
        ...
        status, body = edge.get(sock["dnsname"], "/")

Why it is shaped this way:
- The edge starts with every port 0 and ``--tcp-ports 0``, so any number of
  edges (parallel tests, a benchmark next to a test run) never collide; the
  real ports are read from the single ``EDGE READY`` line, with a deadline.
- stdout and stderr of the child go to files in the work directory, never to
  pipes, so a chatty child can never block on a full pipe; ``log_tail()``
  shows the end of the log and ``__exit__`` prints it when the body raised.
- ``restart()`` reuses the data directory AND the ports chosen the first
  time, like a restarted service on a VPS; ``stop()`` is SIGTERM, a deadline,
  then SIGKILL, and ``__exit__`` always stops the child, even on failure.
- Helpers use only the standard library (http.client), so anything in the
  project can use them without extra dependencies.
"""

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
_READY = re.compile(r"EDGE READY api=(\S+):(\d+) ssh=(\S+):(\d+) http=(\S+):(\d+)"
                    r"(?: https=(\S+):(\d+))?(?: dns=(\S+):(\d+))?")
_METRICS = re.compile(r"EDGE READY .* metrics=\S+:(\d+)")


@dataclass
class EdgeOptions:
    admin: bool = False
    token_lifetime: Optional[float] = None
    domain: str = "edge.localhost"
    tcp_ports: str = "0"
    log_level: str = "INFO"
    extra_args: tuple = ()
    # Per-address rate limits off: every test client is 127.0.0.1, and suites
    # register and log in far more often than one person would. Tests of the
    # limits themselves pass their own values.
    limits: dict = field(default_factory=lambda: {
        "registrations_per_hour_per_address": 0, "logins_per_minute_per_address": 0,
        "auth_failures_per_minute": 0})
    ready_timeout: float = 20.0
    stop_timeout: float = 5.0


@dataclass
class ApiResponse:
    status: int
    body: object          # parsed JSON, or text when the body is not JSON
    headers: dict = field(default_factory=dict)


def ssh_keygen(path: Path, key_type: str = "ed25519") -> str:
    """Create a passphrase-less key pair at path; return the public key line."""
    path = Path(path)
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "test",
                    "-f", str(path)], check=True, timeout=60, stdin=subprocess.DEVNULL)
    return path.with_name(path.name + ".pub").read_text().strip()


class EdgeProcess:
    """``python -m edge`` as a child process; a context manager."""

    def __init__(self, workdir: Path, options: Optional[EdgeOptions] = None, **kwargs):
        self.workdir = Path(workdir)
        self.options = replace(options or EdgeOptions(), **kwargs)
        self.data_dir = self.workdir / "edge-data"
        self.log_path = self.workdir / "edge.log"
        self._stdout_path = self.workdir / "edge.stdout"
        self._proc: Optional[subprocess.Popen] = None
        self._ports = {"api": 0, "ssh": 0, "http": 0, "https": 0}
        self.host = "127.0.0.1"

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> "EdgeProcess":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop()
        if exc_type is not None and exc_type is not KeyboardInterrupt:
            sys.stderr.write("---- edge log tail ----\n" + self.log_tail() + "\n")
        return False

    def _argv(self) -> list:
        o = self.options
        argv = [sys.executable, "-m", "edge",
                "--api-port", str(self._ports["api"]), "--ssh-port", str(self._ports["ssh"]),
                "--http-port", str(self._ports["http"]),
                "--https-port", str(self._ports["https"]), "--listen", self.host,
                "--data-dir", str(self.data_dir), "--domain", o.domain,
                "--tcp-ports", o.tcp_ports, "--log-level", o.log_level]
        if o.admin:
            argv.append("--admin")
        if o.token_lifetime is not None:
            argv += ["--token-lifetime", str(o.token_lifetime)]
        for name, value in o.limits.items():
            argv += ["--" + name.replace("_", "-"), str(value)]
        return argv + list(o.extra_args)

    def start(self) -> None:
        if self.running:
            raise RuntimeError("edge already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self._stdout_path, "wb") as out, open(self.log_path, "ab") as err:
            self._proc = subprocess.Popen(self._argv(), cwd=str(REPO_ROOT),
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + self.options.ready_timeout
        while time.monotonic() < deadline:
            match = _READY.search(self._stdout_path.read_text(errors="replace"))
            if match:
                self._ports = {"api": int(match.group(2)), "ssh": int(match.group(4)),
                               "http": int(match.group(6)),
                               "https": int(match.group(8) or 0),
                               "dns": int(match.group(10) or 0)}
                metrics = _METRICS.search(self._stdout_path.read_text(errors="replace"))
                if metrics:
                    self._ports["metrics"] = int(metrics.group(1))
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        code = self._proc.poll()
        self.stop()
        raise RuntimeError("edge did not become ready ({}); log tail:\n{}".format(
            "exited with {}".format(code) if code is not None else "timeout",
            self.log_tail()))

    def stop(self) -> Optional[int]:
        """SIGTERM, wait up to stop_timeout, then SIGKILL. Returns the exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.options.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def restart(self) -> None:
        """Stop, then start again with the same data dir and the same ports."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- addresses -----------------------------------------------------------
    @property
    def api_port(self) -> int:
        return self._ports["api"]

    @property
    def api_url(self) -> str:
        return "http://{}:{}/".format(self.host, self._ports["api"])

    @property
    def dns_port(self) -> int:
        """The port of the zone's DNS (UDP and TCP) when started with ``--dns-port``, else 0."""
        return self._ports.get("dns", 0)

    @property
    def metrics_url(self) -> str:
        """GET /metrics of ``--metrics-listen`` (on this edge's address; started with it)."""
        return "http://{}:{}/metrics".format(self.host, self._ports["metrics"])

    @property
    def ssh_host(self) -> str:
        return self.host

    @property
    def ssh_port(self) -> int:
        return self._ports["ssh"]

    @property
    def http_port(self) -> int:
        return self._ports["http"]

    @property
    def https_port(self) -> int:
        return self._ports["https"]

    @property
    def ca_cert(self) -> Path:
        """The edge's internal CA (what a client trusts for its own certificates)."""
        return self.data_dir / "ca.crt"

    def child_pids(self) -> list:
        """PIDs of the edge's children (the data plane), for CPU and memory figures."""
        try:
            import psutil
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except Exception:
            return []

    def known_hosts_line(self) -> str:
        """A known_hosts line for the edge's SSH host key at its current port."""
        pub = (self.data_dir / "ssh_host_ed25519_key.pub").read_text().split()
        return "[{}]:{} {} {}".format(self.ssh_host, self.ssh_port, pub[0], pub[1])

    def known_hosts_file(self) -> Path:
        path = self.workdir / "known_hosts"
        path.write_text(self.known_hosts_line() + "\n")
        return path

    def ssh_argv(self, identity: Path, user_name: str, options=(), command=()) -> list:
        """argv of the OpenSSH client against this edge, hermetic and non-interactive.

        options go before the host (e.g. ["-N", "-R", "10000:127.0.0.1:8080"]),
        command after it.
        """
        return ["ssh", "-F", "/dev/null", "-i", str(identity),
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no",
                "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile={}".format(self.known_hosts_file()),
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no",
                "-o", "ExitOnForwardFailure=yes", "-o", "ConnectTimeout=10",
                "-o", "LogLevel=ERROR",
                "-p", str(self.ssh_port), "-l", user_name, *options,
                self.ssh_host, *command]

    # -- REST API --------------------------------------------------------------
    def api(self, method: str, path: str, body=None, token: Optional[str] = None,
            timeout: float = 10.0) -> ApiResponse:
        """One API call. body: a JSON-able value, or bytes sent as they are."""
        headers = {"accept": "application/json"}
        if token is not None:
            headers["x-access-token"] = token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.api_port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return ApiResponse(resp.status, parsed, resp_headers)

    def register(self, email: str, password: str, pubkey_line: str,
                 name: str = "Test User") -> dict:
        resp = self.api("POST", "/user", {"name": name, "email": email,
                                          "password": password, "sshkey": pubkey_line})
        if resp.status != 200:
            raise RuntimeError("register failed: {} {}".format(resp.status, resp.body))
        return resp.body

    def login(self, email: str, password: str) -> str:
        resp = self.api("POST", "/login", {"email": email, "password": password})
        if resp.status != 200:
            raise RuntimeError("login failed: {} {}".format(resp.status, resp.body))
        return resp.body["token"]

    def tunnels(self) -> list:
        """Connected forwards (needs admin=True)."""
        return self.api("GET", "/_admin/tunnels").body

    def wait_forward(self, local_port: int, present: bool = True,
                     timeout: float = 10.0) -> None:
        """Wait until a forward of local_port is (or is no longer) connected; admin only."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {t["local_port"] for t in self.tunnels()}
            if (local_port in ports) == present:
                return
            time.sleep(0.05)
        raise TimeoutError("forward of port {} still {}".format(
            local_port, "absent" if present else "present"))

    # -- public side -----------------------------------------------------------
    def get(self, dnsname: str, path: str = "/", headers: Optional[dict] = None,
            timeout: float = 10.0) -> tuple:
        """GET through the HTTP front with Host: dnsname; returns (status, body text)."""
        conn = http.client.HTTPConnection(self.host, self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": dnsname, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128     # the default 5 drops SYNs under a small burst

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):   # peer went away: fine
            super().handle_error(request, client_address)


class HttpBackend:
    """A tiny threaded HTTP/1.0 server on 127.0.0.1, a stand-in for a user's service.

    GET /bytes/N answers N bytes (a repeating pattern); any other GET answers
    ``<name> <path>``; POST echoes the request body back.
    """

    def __init__(self, name: str = "backend"):
        outer_name = name

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: bytes):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/bytes/"):
                    return self._send(pattern_bytes(int(self.path.split("/")[2])))
                return self._send("{} {}\n".format(outer_name, self.path).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                return self._send(self.rfile.read(length))

            def log_message(self, *args):
                pass

        self.name = name
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "HttpBackend":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._server.shutdown()
        self._server.server_close()
        return False


def pattern_bytes(n: int) -> bytes:
    """n bytes of a pattern that shows reordering or loss (not just a count)."""
    block = bytes(range(256)) * 4 + b"edge"
    return (block * (n // len(block) + 1))[:n]
