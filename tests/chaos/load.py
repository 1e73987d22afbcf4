"""A steady load of requests through the edge, counted: what a visitor of the public name sees."""

import http.client
import threading
import time


class Load:
    """GET the name every `interval` seconds on a thread of its own until stopped; every answer kept."""

    def __init__(self, edge, dnsname, interval=0.02, timeout=5.0):
        self.edge, self.dnsname, self.interval, self.timeout = edge, dnsname, interval, timeout
        self.answers = []           # (monotonic time, status or None, body or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def _run(self):
        while not self._stop.wait(self.interval):
            conn = http.client.HTTPConnection(self.edge.host, self.edge.http_port, timeout=self.timeout)
            try:
                conn.request("GET", "/", headers={"Host": self.dnsname, "Connection": "close"})
                resp = conn.getresponse()
                self.answers.append((time.monotonic(), resp.status, resp.read().decode(errors="replace")))
            except OSError as e:
                self.answers.append((time.monotonic(), None, repr(e)))
            finally:
                conn.close()

    def since(self, t):
        return [a for a in self.answers if a[0] >= t]

    @staticmethod
    def failed(answers):
        return [a for a in answers if a[1] != 200]

    def wait_for_answers(self, n, after=0.0, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.since(after)) < n:
            time.sleep(0.05)
        return self.since(after)
