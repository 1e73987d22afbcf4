"""/healthz, /readyz and /metrics on one small HTTP server thread.

/healthz answers whether the process should be restarted (the loop is
turning and the watch thread lives); /readyz whether it can do its job
(logged in, Services listed and watched; a standby replica is ready too).
Both read the runner's state and never call anything remote, so a probe can
never be slower than the kubelet's timeout.

It listens on both address families at once (one IPv6 socket that also takes
IPv4): the kubelet probes the pod's IP, which is IPv6 in an IPv6-only or
dual-stack cluster. A kernel without IPv6 gets an IPv4 socket instead.
"""

import http.server
import socket
import threading

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def serve(port, runner, address=""):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                ok = runner.alive()
                self._send(200 if ok else 500, "ok\n" if ok else "main loop stuck or watch thread dead\n")
            elif self.path == "/readyz":
                ok, reason = runner.readiness()
                self._send(200 if ok else 503, reason + "\n")
            elif self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, "not found\n")

        def _send(self, status, body, content_type="text/plain; charset=utf-8"):
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass                    # probes every few seconds would drown the log

    server = _listen(address, port, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


class _DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _listen(address, port, handler):
    """All addresses of both families for "" (the default), else just `address`."""
    if address in ("", "::"):
        try:
            return _DualStackServer(("::", port), handler)
        except OSError:             # no IPv6 in this kernel (ipv6.disable=1)
            return http.server.ThreadingHTTPServer(("", port), handler)
    return http.server.ThreadingHTTPServer((address, port), handler)
