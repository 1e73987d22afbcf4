"""The health server answers the kubelet's probes on whatever address family the pod has.

A pod's IP may be IPv6 only (an IPv6 or a dual-stack cluster), and the kubelet
probes that IP: a server bound to 0.0.0.0 refuses it, and the liveness probe
then restarts a healthy controller. Real sockets on loopback, a stub runner.
"""

import http.client
import socket

import pytest

from lib import health


class StubRunner:
    def alive(self):
        return True

    def readiness(self):
        return True, "leader"


@pytest.fixture
def server():
    srv = health.serve(0, StubRunner())
    yield srv
    srv.shutdown()
    srv.server_close()


def get(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_probes_are_answered_over_ipv4_and_ipv6(server, host):
    port = server.server_address[1]
    assert get(host, port, "/healthz") == (200, "ok\n")
    assert get(host, port, "/readyz") == (200, "leader\n")


def test_without_ipv6_it_still_serves_ipv4(monkeypatch):
    """A kernel with IPv6 switched off (ipv6.disable=1) must not stop the health server."""
    real_socket = socket.socket

    def no_ipv6(family=-1, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", no_ipv6)
    srv = health.serve(0, StubRunner())
    try:
        assert get("127.0.0.1", srv.server_address[1], "/healthz") == (200, "ok\n")
    finally:
        srv.shutdown()
        srv.server_close()
