"""The known HTTP/2 floods from one visitor (tests/edge/h2flood.py) while another visitor's
HTTP/2 requests (real curl) go on succeeding: rapid reset, CONTINUATION, SETTINGS and PING.

What bounds each (net/http's HTTP/2 server or the edge's own) is in edge/README.md, "HTTP/2 and
gRPC"; each test checks that the flood's connection is closed by the edge, with the error code
the protocol gives when there is one (a SETTINGS flood is not closed: it costs the edge no memory).
"""

import os
import signal
import subprocess
import threading

import pytest

from edge.testing import EdgeProcess
from edgetest_helpers import forward_argv, new_socket
from h2flood import FloodClient

pytestmark = pytest.mark.timeout(180)

MAX_STREAMS = 10
PROTOCOL_ERROR, ENHANCE_YOUR_CALM = 0x1, 0xB


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """This module's own edge, with few streams per connection (the rapid-reset bound is 4x it)."""
    with EdgeProcess(tmp_path_factory.mktemp("edge"), admin=True,
                     extra_args=("--h2-max-streams", str(MAX_STREAMS))) as proc:
        yield proc


@pytest.fixture
def served(edge, new_account, ssh, backend):
    """Factory: (socket, ssh process) of a new account's socket, tunnelled to a backend."""
    def make(name):
        acct = new_account()
        sock = new_socket(edge, acct)
        port = sock["tunnels"][0]["local_port"]
        proc = ssh.start(forward_argv(edge, acct, port, backend(name).port))
        edge.wait_forward(port)
        return sock, proc
    return make


class OtherVisitor:
    """A well-behaved visitor (curl --http2, from 127.0.0.1) asking for `name` in a loop until
    stopped; `results` are (status, body) pairs."""

    def __init__(self, edge, name):
        self.edge, self.name = edge, name
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        url = "https://{}:{}/other".format(self.name, self.edge.https_port)
        while not self._stop.is_set() and len(self.results) < 1000:
            out = subprocess.run(["curl", "-sS", "--http2", "--max-time", "20", "--cacert", str(self.edge.ca_cert),
                                  "--resolve", "{}:{}:{}".format(self.name, self.edge.https_port, self.edge.host),
                                  "-w", "\n%{http_code} %{http_version}", url],
                                 capture_output=True, text=True, timeout=30)
            body, _, code = out.stdout.rpartition("\n")
            self.results.append((code, body))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)

    def all_served(self, backend_name):
        return self.results and all(r == ("200 2", backend_name + " /other\n") for r in self.results)


def test_rapid_reset_is_cut_off_with_enhance_your_calm(edge, served):
    """Streams opened and reset at once, faster than their handlers end (the app's tunnel is
    frozen, so each handler waits): net/http runs MAX_STREAMS of them and closes the
    connection once more than 4x that wait, instead of starting a handler per stream."""
    slow, frozen = served("slow")
    other, _ = served("other")
    os.kill(frozen.pid, signal.SIGSTOP)
    flood = FloodClient(edge, slow["dnsname"])
    try:
        with OtherVisitor(edge, other["dnsname"]) as visitor:
            flood.rapid_resets(5000)
            assert flood.goaway() == ENHANCE_YOUR_CALM
        assert visitor.all_served("other"), visitor.results[:3]
    finally:
        flood.close()
        os.kill(frozen.pid, signal.SIGCONT)


def test_a_continuation_flood_is_cut_off_at_the_header_cap(edge, served):
    target, _ = served("target")
    other, _ = served("other")
    flood = FloodClient(edge, target["dnsname"])
    try:
        with OtherVisitor(edge, other["dnsname"]) as visitor:
            sent = flood.continuation_flood(5000)          # 80 MB of headers if nothing stopped it
            assert sent < 5000
            assert flood.goaway() in (PROTOCOL_ERROR, None)    # the GOAWAY may be lost to the reset
        assert visitor.all_served("other"), visitor.results[:3]
    finally:
        flood.close()


def test_a_ping_flood_that_never_reads_its_acks_is_closed(edge, served):
    """PING frames sent without ever reading the ACKs: the edge closes the connection once its
    ACKs back up (net/http: 10,000 queued control frames) instead of buffering them all."""
    target, _ = served("target")
    other, _ = served("other")
    flood = FloodClient(edge, target["dnsname"], rcvbuf=4096)
    try:
        with OtherVisitor(edge, other["dnsname"]) as visitor:
            sent = flood.control_flood("ping", 3_000_000)     # 51 MB: far past every buffer
            assert sent < 3_000_000
        assert visitor.all_served("other"), visitor.results[:3]
    finally:
        flood.close()


def test_a_settings_flood_costs_one_ack_not_one_per_frame(edge, served):
    """SETTINGS frames without reading the ACKs: net/http owes at most one ACK at a time (it
    coalesces them), so the flood holds no memory on the edge; the visitor gets far fewer ACKs
    than it sent SETTINGS, and the other visitor is served throughout."""
    target, _ = served("target")
    other, _ = served("other")
    flood = FloodClient(edge, target["dnsname"], rcvbuf=4096)
    try:
        with OtherVisitor(edge, other["dnsname"]) as visitor:
            sent = flood.control_flood("settings", 3_000_000)
            acks = flood.settings_acks()
            assert acks < sent // 10, (acks, sent)
        assert visitor.all_served("other"), visitor.results[:3]
    finally:
        flood.close()
