"""An HTTP proxy in front of the edge's API that a test can make misbehave, one request at a time.

Used where the edge's own fault injection (random, per call) cannot say which
call: hold the create of one named socket until the test lets it go, or
rewrite one answer. It notes which requests it is holding and whether the
client gave up on one (closed the connection, as it does at its read timeout),
so a test can tell "while the call was in flight" from "after", without a clock.
Listens on 127.0.0.1 only; `close()` lets every held request go.
"""

import http.server
import json
import select
import socket
import threading

import requests


class ApiProxy:
    def __init__(self, api_url, *, hold=None, rewrite=None, finish_abandoned=False):
        """hold(method, path, body) -> bool; rewrite(method, path, body, answer dict) -> answer dict.

        finish_abandoned: a held request whose client went away is still sent on when released, as a
        request already on its way to the server would be (the server acts; nobody hears the answer).
        """
        self.api_url = api_url.rstrip("/")
        self.finish_abandoned = finish_abandoned
        self.hold = hold or (lambda method, path, body: False)
        self.rewrite = rewrite
        self.release = threading.Event()
        self.held = []                  # bodies of the requests held so far
        self.abandoned = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="api-proxy", daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/"

    def close(self):
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                body = json.loads(raw) if raw else None
                if proxy.hold(self.command, self.path, body):
                    proxy.held.append(body)
                    while not proxy.release.wait(0.05):
                        if not proxy.abandoned.is_set() and self._client_gone():
                            proxy.abandoned.set()
                            if not proxy.finish_abandoned:
                                return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, proxy.api_url + self.path, data=raw, headers=headers,
                                        timeout=30)
                out = resp.content
                if proxy.rewrite and resp.headers.get("Content-Type", "").startswith("application/json"):
                    out = json.dumps(proxy.rewrite(self.command, self.path, body, resp.json())).encode()
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _client_gone(self):
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _forward

            def log_message(self, *args):
                pass

        return Handler


def creating(suffix):
    """A hold predicate: the create (POST /socket, or /connect) of a socket whose name ends with suffix."""
    return lambda method, path, body: method == "POST" and path in ("/socket", "/connect") and \
        str((body or {}).get("name", "")).endswith(suffix)
