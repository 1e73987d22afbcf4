"""Helpers of the many-node edge's tests (a uniquely named module, importable from them)."""

import http.client
import time

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
