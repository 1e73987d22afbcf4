"""Real mysocketctl 0.15, unmodified, against one node of a three-node edge.

mysocketctl hard-codes api.mysocket.io:443 and ssh.mysocket.io:22 and ignores
``tunnel_server``, so its tunnel lands on whichever node those names point
at, whatever the placement said: the node must accept it, and every node must
know the account and the name it made. As in tests/edge/test_mysocketctl.py,
the CLI runs in a mount namespace of its own where /etc/hosts points those
names at node B, and trusts the edge's internal CA (shared by every node).
"""

import os
import signal
import subprocess
import time

import pytest

from edge.clustertesting import ClusterOptions, EdgeCluster
from edge.testing import REPO_ROOT, ssh_keygen
from globaltest_helpers import edge_reason, until

pytestmark = pytest.mark.timeout(180)

CLI = REPO_ROOT / ".venv-mysocketctl" / "bin" / "mysocketctl"


def test_mysocketctl_015_against_one_node_of_three(pg, tmp_path, backend):
    assert CLI.exists(), "run `make mysocketctl` (make test does) to install mysocketctl 0.15"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    pub = ssh_keygen(home / ".ssh" / "id_ed25519")
    (home / ".ssh" / "id_ed25519.pub").write_text(pub + "\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.1.2 api.mysocket.io ssh.mysocket.io\n")
    be = backend("from-mysocketctl")
    options = ClusterOptions(domain="edge.mysocket.io", extra_args=("--api-name", "api.mysocket.io"),
                             ports={"api": 8080, "ssh": 22, "http": 8000, "https": 443})
    with EdgeCluster(tmp_path / "cluster", pg.new_database("mysocketctl"), 3, options) as cluster:
        cluster.wait_live(3)
        a, b, c = cluster.nodes
        env = dict(os.environ, HOME=str(home), REQUESTS_CA_BUNDLE=str(b.ca_cert))

        def cli(*args) -> list:
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts), str(CLI), *args]

        def run(*args):
            result = subprocess.run(cli(*args), env=env, capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            return result.stdout

        run("account", "create", "--name", "Old Client", "--email", "old@example.com",
            "--password", "pw-old", "--sshkey", str(home / ".ssh" / "id_ed25519.pub"))
        assert "Logged in" in run("login", "--email", "old@example.com", "--password", "pw-old")
        token = a.login("old@example.com", "pw-old")          # the account is on every node

        out = open(tmp_path / "connect.out", "w")
        proc = subprocess.Popen(cli("connect", "--port", str(be.port), "--name", "served",
                                    "--engine", "paramiko"),
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        try:
            sock = until(lambda: [s for s in c.api("GET", "/connect", token=token).body
                                  if s["name"] == "served"], timeout=30, what="the socket on C")[0]
            deadline = time.monotonic() + 30
            answer = None
            while time.monotonic() < deadline:
                answer = b.get(sock["dnsname"], "/page")
                if answer[0] == 200:
                    break
                time.sleep(0.2)
            assert answer == (200, "from-mysocketctl /page\n"), \
                (tmp_path / "connect.out").read_text() + b.log_tail(30)
            for node in (a, c):                              # every node knows the name
                status, reason = edge_reason(node, sock["dnsname"])
                assert status in (200, 502) and reason in ("", "no-tunnel"), (status, reason)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
