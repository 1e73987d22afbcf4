"""Helpers of the many-node edge's tests (a uniquely named module, importable from them)."""

import itertools
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edge.testing import EdgeProcess, ssh_keygen

_counter = itertools.count()


@dataclass
class Account:
    email: str
    password: str
    key_path: Path
    pubkey: str
    user: dict
    token: str

    @property
    def user_name(self) -> str:
        return self.user["user_name"]


def make_account(node: EdgeProcess, workdir: Path) -> Account:
    n = next(_counter)
    key_path = workdir / "gkey{}".format(n)
    pubkey = ssh_keygen(key_path)
    email = "global{}-{}@example.com".format(n, time.monotonic_ns())
    user = node.register(email, "pw-global", pubkey)
    return Account(email, "pw-global", key_path, pubkey, user, node.login(email, "pw-global"))


def until(check, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``check()`` until it returns a truthy value (returned), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("{} not met within {} s (last: {!r})".format(what, timeout, last))


def forward_argv(node: EdgeProcess, acct: Account, local_port: int, target_port: int) -> list:
    """ssh -N -R local_port:127.0.0.1:target_port to ``node``, with keepalives."""
    return node.ssh_argv(acct.key_path, acct.user_name, options=[
        "-N", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2",
        "-R", "{}:127.0.0.1:{}".format(local_port, target_port)])


def edge_reason(node: EdgeProcess, dnsname: str) -> tuple:
    """(status, Mysocket-Edge header or "") of a GET of dnsname through node's HTTP front."""
    import http.client
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": dnsname})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Mysocket-Edge") or ""
    finally:
        conn.close()


class SshClients:
    """Starts OpenSSH clients; kills and reaps every one at teardown (by PID)."""

    def __init__(self, workdir: Path):
        self._workdir = workdir
        self.procs = []

    def start(self, argv: list) -> subprocess.Popen:
        path = self._workdir / "ssh{}.out".format(len(self.procs))
        with open(path, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
