"""Helpers of the many-node edge's tests (a uniquely named module, importable from them)."""

import http.client
import threading
import time

from edge.clustertesting import TunnelFollower  # noqa: F401
from edge.testclients import Account, SshClients, forward_argv, make_account  # noqa: F401
from edge.testing import EdgeProcess


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


def edge_reason(node: EdgeProcess, dnsname: str) -> tuple:
    """(status, Mysocket-Edge header or "") of a GET of dnsname through node's HTTP front."""
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": dnsname})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Mysocket-Edge") or ""
    finally:
        conn.close()


class Visitor:
    """A GET every 20 ms through the HTTP fronts of ``nodes``, as a client given several A records
    does: addresses in turn, the next one when a connection is refused or does not answer within
    ``patience`` (before any byte of an answer), and an address that failed is tried last for
    the next 10 s (browsers remember a failing address too). Counts the answers and the
    requests that failed on every address, each failure as a dict with when the request started
    and ended (monotonic), the node, the status and the edge's reason (``Mysocket-Edge``)."""

    def __init__(self, nodes: list, dnsname: str, patience: float = 1.0):
        self._nodes, self._dnsname, self._patience = nodes, dnsname, patience
        self.answers: dict = {}
        self.failures: list = []
        self.retried = 0
        self._bad: dict = {}                      # host -> monotonic time until which it goes last
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, turn: int) -> None:
        reasons = []
        now = started = time.monotonic()
        order = [self._nodes[(turn + i) % len(self._nodes)] for i in range(len(self._nodes))]
        order.sort(key=lambda n: self._bad.get(n.host, 0) > now)
        for node in order:
            try:
                conn = http.client.HTTPConnection(node.host, node.http_port, timeout=self._patience)
                conn.request("GET", "/", headers={"Host": self._dnsname})
                resp = conn.getresponse()
                conn.sock.settimeout(10)
                body = resp.read().decode(errors="replace")
                conn.close()
            except OSError as exc:
                reasons.append("{}: {}".format(node.host, exc))
                self.retried += 1
                self._bad[node.host] = time.monotonic() + 10
                continue
            if resp.status == 200:
                self.answers[body] = self.answers.get(body, 0) + 1
            else:
                self.failures.append({"started": started, "ended": time.monotonic(), "node": node.host,
                                      "status": resp.status, "reason": resp.getheader("Mysocket-Edge"),
                                      "body": body[:80]})
            return
        self.failures.append({"started": started, "ended": time.monotonic(), "node": "every address",
                              "status": None, "reason": "; ".join(reasons), "body": ""})

    def _run(self):
        turn = 0
        while not self._stop.is_set():
            self._one(turn)
            turn += 1
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        return False
