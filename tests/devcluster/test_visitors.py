"""The global demo's client (devcluster.visitors) against real servers: real curl, two addresses, one port.

Two tiny HTTP servers play two edge nodes on 127.0.3.1 and 127.0.3.2 (same port, inside `make test`'s
namespace); "killing" one closes its listener (the address then refuses, as a killed node's does) and
breaks the request it holds, if any. What the demo prints -- which node answered, what failed, what
was in flight -- is what these runs count.
"""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devcluster import assert_private_netns
from devcluster.visitors import Visitor, per_edge, table

ADDRESSES = ["127.0.3.1", "127.0.3.2"]
NAME = "shop.demo.test"


class Node:
    """A server answering `Server: <pod>` on `address`; with `hold`, a request waits for kill() and is
    then broken off without an answer (the connection closed), as a killed node's are."""

    def __init__(self, address, port, pod, hold=False):
        self.broken, self.hold, self.held = threading.Event(), hold, threading.Event()
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if node.hold:
                    node.held.set()
                    node.broken.wait(10)
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = f"Server: {pod}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kill(self):
        at = time.monotonic()
        self.server.shutdown()
        self.server.server_close()
        self.broken.set()
        return at


@pytest.fixture
def port():
    assert_private_netns()         # 127.0.3.x with one port: only inside `make test`'s namespace
    with socket.socket() as s:
        s.bind((ADDRESSES[0], 0))
        return s.getsockname()[1]


def test_the_addresses_take_turns_and_a_refusing_one_is_skipped_by_curl(port):
    a, b = Node(ADDRESSES[0], port, "pod-a"), Node(ADDRESSES[1], port, "pod-b")
    visitor = Visitor(NAME, port, ADDRESSES)
    try:
        run = visitor.run(6)
        assert run.edges() == {ADDRESSES[0]: 3, ADDRESSES[1]: 3} and run.failed == []
        assert run.pods() == {"pod-a": 3, "pod-b": 3}
        a.kill()
        run = visitor.run(6)
    finally:
        b.kill()
        a.kill()
    assert run.failed == [] and run.in_flight == []
    assert run.pods() == {"pod-b": 6}
    assert sum(answer.order[0] == ADDRESSES[0] for answer in run.answers) == 3   # curl went on to the next
    assert per_edge(run) == f"{ADDRESSES[1]} 6"
    assert table(run, {"pod-b": "cluster-b"}) == "      6 cluster-b  Server: pod-b"


def test_a_request_broken_by_the_kill_is_in_flight_retried_once_and_not_a_failure(port):
    a, b = Node(ADDRESSES[0], port, "pod-a", hold=True), Node(ADDRESSES[1], port, "pod-b")
    visitor = Visitor(NAME, port, ADDRESSES)
    try:
        run = visitor.run(3, action=a.kill, action_after=1.0)     # the first request waits on a until then
    finally:
        b.kill()
        a.kill()
    assert run.failed == []
    [(broken, retry)] = run.in_flight
    assert broken.edge == ADDRESSES[0] and not broken.ok and broken.started <= run.action_at <= broken.ended
    assert retry.ok and retry.edge == ADDRESSES[1]
    assert run.pods() == {"pod-b": 3}


def test_a_request_that_fails_outside_the_kill_is_a_failure(port):
    a, b = Node(ADDRESSES[0], port, "pod-a"), Node(ADDRESSES[1], port, "pod-b")
    a.kill()
    b.kill()
    run = Visitor(NAME, port, ADDRESSES).run(2)
    assert len(run.failed) == 2 and run.in_flight == [] and run.pods() == {}
    assert table(run, {}) == "      2 FAILED     curl exit 7, HTTP - via no address"
