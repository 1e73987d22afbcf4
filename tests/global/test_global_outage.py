"""PostgreSQL stopped for a minute under load: every name serves, writes answer 503, nothing lost.

The store is never in a request's path: each node serves from its last
state; SSH logins keep working with the keys the nodes had; API reads answer
from each node's picture; writes are refused with a clear error_message; when
the store is back, a create made on one node works on the others, and
nothing made before is lost or doubled.
"""

import http.client
import threading
import time

import pytest

from globaltest_helpers import edge_reason, forward_argv, make_account, until

pytestmark = pytest.mark.timeout(240)

OUTAGE = 60.0


class Load:
    """A GET every 20 ms through ``node``'s HTTP front, each on a new connection; counts answers."""

    def __init__(self, node, dnsname: str):
        self._node, self._dnsname = node, dnsname
        self.answers: dict = {}
        self.failures: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection(self._node.host, self._node.http_port, timeout=5)
                conn.request("GET", "/", headers={"Host": self._dnsname})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                conn.close()
                if resp.status == 200:
                    self.answers[body] = self.answers.get(body, 0) + 1
                else:
                    self.failures.append((resp.status, body[:80]))
            except OSError as exc:
                self.failures.append(("error", str(exc)))
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        return False


def test_a_store_outage_of_a_minute_costs_no_request_and_loses_nothing(cluster, pg, tmp_path, ssh,
                                                                       backend):
    a, b, c = cluster.nodes
    acct = make_account(a, tmp_path)
    sock = b.api("POST", "/socket", {"name": "through-outage"}, token=acct.token).body
    tunnels = [a.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {}, token=acct.token).body
               for _ in range(2)]
    first, second = tunnels
    home = cluster.by_host(first["tunnel_server"])
    other = cluster.by_host(second["tunnel_server"])
    ssh.start(forward_argv(home, acct, first["local_port"], backend("one").port))
    home.wait_forward(first["local_port"])
    before = {n.host: n.api("GET", "/connect", token=acct.token).body for n in cluster.nodes}

    with Load(home, sock["dnsname"]) as load:
        until(lambda: load.answers, what="first answers")
        pg.stop()
        t0 = time.monotonic()
        until(lambda: all(cluster.health(n)[1]["store"] != "ok" for n in cluster.nodes),
              timeout=15, what="every node noticing the store is gone")
        # Reads answer from each node's picture; logins too.
        for node in cluster.nodes:
            assert node.api("GET", "/connect", token=acct.token).body == before[node.host]
            assert node.login(acct.email, acct.password)
        # Writes are refused, clearly.
        refused = c.api("POST", "/connect", {"name": "during"}, token=acct.token)
        assert refused.status == 503 and "database is unavailable" in refused.body["error_message"]
        assert b.api("DELETE", "/socket/" + sock["socket_id"], token=acct.token).status == 503
        # An SSH login with the key the node had, for the socket's other tunnel, works.
        ssh.start(forward_argv(other, acct, second["local_port"], backend("two").port))
        other.wait_forward(second["local_port"])
        assert other.get(sock["dnsname"], "/") == (200, "two /\n")
        # Every node still says it serves (a store outage must not take every node out).
        assert all(cluster.health(n)[0] == 200 for n in cluster.nodes)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - t0)))
        pg.start()
        until(lambda: all(cluster.health(n)[1]["store"] == "ok" for n in cluster.nodes),
              timeout=20, what="every node back on the store")
        time.sleep(0.5)
    assert load.failures == [] and sum(load.answers.values()) > 1000, (load.failures[:5], load.answers)

    # A create on one node after the outage works on the others; nothing was lost or doubled.
    made = c.api("POST", "/connect", {"name": "after"}, token=acct.token)
    assert made.status == 200, made.body
    for node in (a, b):
        until(lambda node=node: node.api("GET", "/socket/" + made.body["socket_id"], token=acct.token).status == 200,
              what="the new socket on another node")
        until(lambda node=node: edge_reason(node, made.body["dnsname"]) == (502, "no-tunnel"),
              what="the new name on another node's data plane")
    names = sorted(s["name"] for s in a.api("GET", "/connect", token=acct.token).body)
    assert names == ["after", "through-outage"]
