"""Real mysocketctl 0.15 (from PyPI, unmodified) against this edge.

mysocketctl hard-codes https://api.mysocket.io/ and ssh.mysocket.io:22, so
the edge runs on ports 443 and 22 of the test's private network namespace
with the API name api.mysocket.io, and the CLI runs in a mount namespace of
its own (``unshare --mount``) where /etc/hosts points those names at
127.0.0.1: nothing outside that one process tree sees the change. It trusts
the edge's internal CA through REQUESTS_CA_BUNDLE, and its Paramiko engine
finds the account's key in $HOME/.ssh (the system ssh would read the real
home directory). `make mysocketctl` installs it in .venv-mysocketctl/.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edge.testing import REPO_ROOT, EdgeProcess, ssh_keygen

pytestmark = pytest.mark.timeout(120)

CLI = REPO_ROOT / ".venv-mysocketctl" / "bin" / "mysocketctl"


def cli_argv(hosts: Path, *args) -> list:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts), str(CLI), *args]


def test_mysocketctl_015_logs_in_creates_connects_and_serves_a_page(tmp_path, backend):
    assert CLI.exists(), "run `make mysocketctl` (make test does) to install mysocketctl 0.15"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    pub = ssh_keygen(home / ".ssh" / "id_ed25519")
    (home / ".ssh" / "id_ed25519.pub").write_text(pub + "\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost api.mysocket.io ssh.mysocket.io\n")
    be = backend("from-mysocketctl")
    edge = EdgeProcess(tmp_path / "edge", admin=True, domain="edge.mysocket.io",
                       extra_args=("--api-name", "api.mysocket.io"))
    edge._ports.update(ssh=22, https=443)     # where mysocketctl looks, in this netns only
    with edge:
        env = dict(os.environ, HOME=str(home), REQUESTS_CA_BUNDLE=str(edge.ca_cert))

        def run(*args):
            result = subprocess.run(cli_argv(hosts, *args), env=env, capture_output=True,
                                    text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            return result.stdout

        run("account", "create", "--name", "Old Client", "--email", "old@example.com",
            "--password", "pw-old", "--sshkey", str(home / ".ssh" / "id_ed25519.pub"))
        assert "Logged in" in run("login", "--email", "old@example.com", "--password", "pw-old")
        assert "old@example.com" in run("account", "show")
        run("socket", "create", "--name", "made-by-cli", "--type", "http")
        assert "made-by-cli" in run("socket", "ls")

        out = open(tmp_path / "connect.out", "w")
        proc = subprocess.Popen(
            cli_argv(hosts, "connect", "--port", str(be.port), "--name", "served",
                     "--engine", "paramiko"),
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        out.close()
        try:
            token = edge.login("old@example.com", "pw-old")
            deadline = time.monotonic() + 30
            answer = None
            while time.monotonic() < deadline:
                socks = [s for s in edge.api("GET", "/connect", token=token).body
                         if s["name"] == "served"]
                if socks:
                    answer = edge.get(socks[0]["dnsname"], "/page")
                    if answer[0] == 200:
                        break
                time.sleep(0.2)
            assert answer == (200, "from-mysocketctl /page\n"), \
                (tmp_path / "connect.out").read_text() + edge.log_tail(30)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
