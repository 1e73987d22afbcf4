"""Real mysocketctl 0.15, unmodified, against one node of a three-node edge.

mysocketctl hard-codes api.mysocket.io:443 and ssh.mysocket.io:22 and ignores
``tunnel_server``, so its tunnel lands on whichever node those names point
at, whatever the placement said: the node must accept it, and every node must
know the account and serve the name it made. As in tests/edge/test_mysocketctl.py,
the CLI runs in a mount namespace of its own where /etc/hosts points those
names at node B, and trusts the edge's internal CA (shared by every node).
"""

import pytest

from edge.clustertesting import ClusterOptions, EdgeCluster
from edge.testclients import MYSOCKETCTL, Mysocketctl
from globaltest_helpers import until

pytestmark = pytest.mark.timeout(180)


def test_mysocketctl_015_against_one_node_of_three(pg, tmp_path, backend):
    assert MYSOCKETCTL.exists(), "run `make mysocketctl` (make test does) to install mysocketctl 0.15"
    be = backend("from-mysocketctl")
    options = ClusterOptions(domain="edge.mysocket.io", extra_args=("--api-name", "api.mysocket.io"),
                             ports={"api": 8080, "ssh": 22, "http": 8000, "https": 443})
    with EdgeCluster(tmp_path / "cluster", pg.new_database("mysocketctl"), 3, options) as cluster:
        cluster.wait_live(3)
        a, b, c = cluster.nodes
        cli = Mysocketctl(tmp_path, b.host, b.ca_cert)              # its names point at node B
        cli.run("account", "create", "--name", "Old Client", "--email", "old@example.com",
                "--password", "pw-old", "--sshkey", str(cli.pubkey_path))
        assert "Logged in" in cli.run("login", "--email", "old@example.com", "--password", "pw-old")
        token = a.login("old@example.com", "pw-old")          # the account is on every node
        with cli.connect(be.port, "served") as out:
            sock = until(lambda: [s for s in c.api("GET", "/connect", token=token).body
                                  if s["name"] == "served"], timeout=30, what="the socket on C")[0]
            answer = until(lambda: b.get(sock["dnsname"], "/page")[0] == 200 and
                           b.get(sock["dnsname"], "/page"), timeout=30, interval=0.2,
                           what="the page through B")
            assert answer == (200, "from-mysocketctl /page\n"), out.read_text() + b.log_tail(30)
            for node in (a, c):                              # and every other node serves it too
                assert until(lambda node=node: node.get(sock["dnsname"], "/page") ==
                             (200, "from-mysocketctl /page\n"), what="the page through " + node.host)
