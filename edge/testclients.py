"""Accounts, OpenSSH clients, backends and mysocketctl for tests against one edge or several.

Shared by tests/edge (through its edgetest_helpers) and tests/global, so both
drive an edge the same way; standard library only, like edge.testing.
"""

import itertools
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.testing import REPO_ROOT, EdgeProcess, HttpBackend, ssh_keygen

MYSOCKETCTL = REPO_ROOT / ".venv-mysocketctl" / "bin" / "mysocketctl"

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


class Backends:
    """HttpBackends started on demand (``start(name)``), all shut down by ``close()``."""

    def __init__(self):
        self._started = []

    def start(self, name: str = "backend") -> HttpBackend:
        server = HttpBackend(name).__enter__()
        self._started.append(server)
        return server

    def close(self) -> None:
        for server in self._started:
            server.__exit__(None, None, None)


class Mysocketctl:
    """The historical CLI (0.15, unmodified) as a user runs it, its fixed names pointed at
    ``address``: it hard-codes api.mysocket.io:443 and ssh.mysocket.io:22, so it runs in a
    mount namespace of its own where /etc/hosts says so (nothing else sees the change),
    trusts ``ca_cert``, and its Paramiko engine finds the key in its own $HOME/.ssh."""

    def __init__(self, workdir: Path, address: str, ca_cert: Path):
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.pubkey_path = self.home / ".ssh" / "id_ed25519.pub"
        pub = ssh_keygen(self.home / ".ssh" / "id_ed25519")
        self.pubkey_path.write_text(pub + "\n")
        self.hosts = self.workdir / "hosts"
        self.hosts.write_text("127.0.0.1 localhost\n{} api.mysocket.io ssh.mysocket.io\n".format(address))
        self.env = dict(os.environ, HOME=str(self.home), REQUESTS_CA_BUNDLE=str(ca_cert))

    def argv(self, *args) -> list:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', str(self.hosts), str(MYSOCKETCTL), *args]

    def run(self, *args) -> str:
        """Run one command to its end (bounded); its stdout. AssertionError if it failed."""
        result = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    @contextmanager
    def connect(self, port: int, name: str):
        """``mysocketctl connect`` (Paramiko) in the background; its output file. Stopped,
        with its whole process group, on the way out."""
        out_path = self.workdir / "connect.out"
        with open(out_path, "w") as out:
            proc = subprocess.Popen(self.argv("connect", "--port", str(port), "--name", name,
                                              "--engine", "paramiko"),
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            yield out_path
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
