"""A real ACME server for tests: Debian's pebble, with pebble-challtestsrv as its DNS.

Both listen on 127.0.0.1 only (inside the test run's network namespace);
challtestsrv answers every A query with 127.0.0.1, so pebble's HTTP-01
validation of any socket name reaches the edge's HTTP port, which is the
port pebble is told to validate on. Certificates, keys and the CA that signs
pebble's own HTTPS are made here with openssl; nothing is fetched.
"""

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_pebble() -> bool:
    return bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


def make_ca_and_leaf(workdir: Path, name: str, sans: str) -> tuple:
    """(ca.pem, leaf.pem, leaf.key): a throwaway CA and a leaf it signs."""
    ca_key, ca = workdir / "ca.key", workdir / "ca.pem"
    key, csr, crt = workdir / (name + ".key"), workdir / (name + ".csr"), workdir / (name + ".pem")
    def run(*a):
        return subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=30)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", "/CN=test CA", "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=" + name, "-keyout", str(key), "-out", str(csr))
    ext = workdir / (name + ".ext")
    ext.write_text("subjectAltName=" + sans + "\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return ca, crt, key


class Pebble:
    """pebble + pebble-challtestsrv as child processes; a context manager."""

    def __init__(self, workdir: Path, validity_seconds: int = 3600):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.mgmt_port, self.dns_port, self.dns_mgmt = (free_port() for _ in range(4))
        self.validity = validity_seconds
        self.ca, self.cert, self.key = make_ca_and_leaf(
            self.workdir, "pebble", "DNS:localhost,IP:127.0.0.1")
        self.procs = []

    @property
    def directory(self) -> str:
        return "https://127.0.0.1:{}/dir".format(self.port)

    def start(self, http_port: int, dns_server: str = "") -> "Pebble":
        """Start both; pebble validates HTTP-01 on http_port (the edge's HTTP port). With
        ``dns_server`` (host:port: the edge's own DNS) pebble asks it instead, and
        challtestsrv is not started."""
        config = self.workdir / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": "127.0.0.1:{}".format(self.port),
            "managementListenAddress": "127.0.0.1:{}".format(self.mgmt_port),
            "certificate": str(self.cert), "privateKey": str(self.key),
            "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "certificateValidityPeriod": self.validity}}))
        log = open(self.workdir / "pebble.log", "ab")
        if not dns_server:
            dns_server = "127.0.0.1:{}".format(self.dns_port)
            self.procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", dns_server,
                 "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", "127.0.0.1:{}".format(self.dns_mgmt), "-defaultIPv4", "127.0.0.1",
                 "-defaultIPv6", ""], stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
               "PATH": "/usr/bin:/bin"}
        self.procs.append(subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", dns_server],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env))
        log.close()
        self._wait()
        return self

    def _wait(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.root()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pebble did not start: " + (self.workdir / "pebble.log").read_text())

    def dns(self, call: str, **body) -> None:
        """Change the records of challtestsrv (started when ``start`` had no ``dns_server``): the
        test's own authoritative DNS for names outside the edge's zone. ``call`` is one of its
        management calls: set-txt (host, value), clear-txt (host), set-cname (host, target),
        clear-cname (host), add-a (host, addresses), clear-a (host). Hosts end with a dot."""
        req = urllib.request.Request("http://127.0.0.1:{}/{}".format(self.dns_mgmt, call),
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200, (call, body, resp.status)

    def orders(self) -> int:
        """How many orders pebble was asked for (it logs the count after each)."""
        counts = re.findall(r"There are now (\d+) orders in the db",
                            (self.workdir / "pebble.log").read_text(errors="replace"))
        return int(counts[-1]) if counts else 0

    def orders_for(self, name: str) -> int:
        """How many of pebble's orders for name reached HTTP-01 validation (one challenge token each),
        whatever other names are ordered meanwhile."""
        tokens = re.findall(r"Attempting to validate w/ HTTP: http://{}:\d+/\.well-known/acme-challenge/(\S+)".format(
            re.escape(name)), (self.workdir / "pebble.log").read_text(errors="replace"))
        return len(set(tokens))

    def root(self) -> str:
        """PEM of the root that signs what pebble issues (it is new on every start)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        url = "https://127.0.0.1:{}/roots/0".format(self.mgmt_port)
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def handshake(edge, name: str, cafile) -> ssl.SSLSocket:
    """A TLS connection to the edge's HTTPS port for name, verified against cafile alone."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    raw = socket.create_connection((edge.host, edge.https_port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=name)
    except BaseException:
        raw.close()
        raise


def verified_serial(edge, name: str, cafile):
    """The serial of the certificate the edge serves for name if it verifies against cafile
    alone, else None."""
    try:
        with handshake(edge, name, cafile) as conn:
            return conn.getpeercert()["serialNumber"]
    except (ssl.SSLError, OSError):
        return None
