"""Helpers shared by the edge's tests (a uniquely named module, not conftest, so
`import` finds it even when other test directories have their own conftest)."""

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


def make_account(edge: EdgeProcess, workdir: Path, key_type: str = "ed25519") -> Account:
    n = next(_counter)
    key_path = workdir / "key{}_{}".format(n, key_type)
    pubkey = ssh_keygen(key_path, key_type)
    email = "user{}-{}@example.com".format(n, time.monotonic_ns())
    password = "pw-{}".format(n)
    user = edge.register(email, password, pubkey)
    return Account(email, password, key_path, pubkey, user, edge.login(email, password))


class SshClients:
    """Starts OpenSSH clients; kills and reaps every one at teardown."""

    def __init__(self, workdir: Path):
        self._workdir = workdir
        self.procs = []

    def start(self, argv: list, stdin=subprocess.DEVNULL) -> subprocess.Popen:
        out = open(self._workdir / "ssh{}.out".format(len(self.procs)), "wb")
        proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        proc.out_path = self._workdir / "ssh{}.out".format(len(self.procs))
        self.procs.append(proc)
        return proc

    def run(self, argv: list, timeout: float = 15) -> subprocess.CompletedProcess:
        """Run an ssh that is expected to exit by itself (bounded)."""
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if proc.stdin:
                proc.stdin.close()


def forward_argv(edge: EdgeProcess, acct: Account, local_port: int, target_port: int,
                 extra=("-N",)) -> list:
    """ssh -N -R local_port:127.0.0.1:target_port as the account, with keepalives."""
    return edge.ssh_argv(acct.key_path, acct.user_name, options=[
        *extra, "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2",
        "-R", "{}:127.0.0.1:{}".format(local_port, target_port)])


def new_socket(edge: EdgeProcess, acct: Account, **fields) -> dict:
    """POST /connect (a socket with one tunnel); asserts success."""
    resp = edge.api("POST", "/connect", {"name": "test", **fields}, token=acct.token)
    assert resp.status == 200, resp.body
    return resp.body
