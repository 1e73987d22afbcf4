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

import time

import pytest

from edge.testclients import MYSOCKETCTL, Mysocketctl
from edge.testing import EdgeProcess

pytestmark = pytest.mark.timeout(120)


def test_mysocketctl_015_logs_in_creates_connects_and_serves_a_page(tmp_path, backend):
    assert MYSOCKETCTL.exists(), "run `make mysocketctl` (make test does) to install mysocketctl 0.15"
    be = backend("from-mysocketctl")
    edge = EdgeProcess(tmp_path / "edge", admin=True, domain="edge.mysocket.io",
                       extra_args=("--api-name", "api.mysocket.io"))
    edge._ports.update(ssh=22, https=443)     # where mysocketctl looks, in this netns only
    with edge:
        cli = Mysocketctl(tmp_path, "127.0.0.1", edge.ca_cert)
        cli.run("account", "create", "--name", "Old Client", "--email", "old@example.com",
                "--password", "pw-old", "--sshkey", str(cli.pubkey_path))
        assert "Logged in" in cli.run("login", "--email", "old@example.com", "--password", "pw-old")
        assert "old@example.com" in cli.run("account", "show")
        cli.run("socket", "create", "--name", "made-by-cli", "--type", "http")
        assert "made-by-cli" in cli.run("socket", "ls")

        with cli.connect(be.port, "served") as out:
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
            assert answer == (200, "from-mysocketctl /page\n"), out.read_text() + edge.log_tail(30)
