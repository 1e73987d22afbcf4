"""One Service's surprise stops nothing else: an odd API answer is contained to its Service."""

import http.server
import json
import select
import socket
import threading

import pytest
import requests

from devcluster.stack import account_sockets, answered, exposed, wait_for

ENABLED = {"mysocket.io/enabled": "true"}


@pytest.fixture
def odd_api(edge):
    """The edge's API behind a proxy that drops `socket_id` from the answer to creating `.../odd`."""

    class Proxy(http.server.BaseHTTPRequestHandler):
        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            resp = requests.request(self.command, edge.api_url.rstrip("/") + self.path, data=body,
                                    headers=headers, timeout=10)
            out = resp.content
            if self.command == "POST" and self.path == "/connect" and json.loads(body)["name"].endswith("/odd"):
                answer = resp.json()
                answer.pop("socket_id", None)
                out = json.dumps(answer).encode()
            self.send_response(resp.status_code)
            self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_an_answer_without_socket_id_is_contained_to_its_service(cluster, standins, make_controller, edge, odd_api):
    c = make_controller(extra_args=["--api-url", odd_api])
    cluster.service("odd", annotations=ENABLED)
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "odd")
    [pod] = standins.for_service(cluster.ns, "web")
    message = wait_for("the odd one's Warning", lambda: [m for t, r, m in cluster.events("odd")
                                                          if (t, r) == ("Warning", "ReconcileError")])
    assert "KeyError" in message[0]
    dnsname = exposed(cluster, edge, "web")
    assert answered(edge, dnsname) == f"Server: {pod.name}\n"
    assert c.proc.poll() is None, "the controller exited"
    tracebacks = [r for r in c.log_records() if r.get("message", "").startswith("unexpected error in reconcile")]
    assert len(tracebacks) == 1 and "Traceback" in tracebacks[0].get("exc_info", "")
    exposed(cluster, edge, "odd")           # its retry finds the socket by name and carries on


@pytest.fixture
def held_api(edge):
    """The edge's API behind a proxy that holds the create of `.../slow` until the test lets it go.

    It notes when that create arrived (`held`) and whether the controller gave up on it (`abandoned`:
    its client closed the connection, as it does at its read timeout), so a test can tell "while the
    call was in flight" from "after it was given up" without reading a clock.
    """
    held, release, abandoned = threading.Event(), threading.Event(), threading.Event()

    class Proxy(http.server.BaseHTTPRequestHandler):
        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            if self.command == "POST" and self.path == "/connect" and json.loads(body)["name"].endswith("/slow"):
                held.set()
                while not release.wait(0.05):
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        abandoned.set()
                        return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            resp = requests.request(self.command, edge.api_url.rstrip("/") + self.path, data=body,
                                    headers=headers, timeout=10)
            self.send_response(resp.status_code)
            self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", held, release, abandoned
    release.set()
    server.shutdown()
    server.server_close()


def test_one_held_api_call_holds_up_no_other_service(cluster, standins, make_controller, edge, account, held_api):
    url, held, release, abandoned = held_api
    make_controller(extra_args=["--api-url", url])
    cluster.service("slow", annotations=ENABLED)
    standins.for_service(cluster.ns, "slow")
    wait_for("slow's create sent and held", held.is_set)
    cluster.service("fast", annotations=ENABLED)
    [pod] = standins.for_service(cluster.ns, "fast")
    dnsname = exposed(cluster, edge, "fast")
    assert not abandoned.is_set(), "fast was served only after the controller gave up on slow's call"
    assert answered(edge, dnsname) == f"Server: {pod.name}\n"
    release.set()
    exposed(cluster, edge, "slow")
    assert sorted(s["name"].rsplit("/", 1)[1] for s in account_sockets(edge, account)) == ["fast", "slow"]
