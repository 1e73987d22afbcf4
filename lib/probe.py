"""Does each tunnel still carry traffic? Ask the edge's public side.

A dead ssh child is seen at once (Popen.poll), a dead connection within the
keepalive window (ServerAliveInterval x ServerAliveCountMax). What neither
sees is a child that is alive but no longer forwards: frozen, wedged, or
holding a session the edge has already given up on. So, when --probe-url is
set, every up tunnel of an unprotected http socket is fetched through the
public edge now and then; when the edge answers that it has no tunnel for the
name (502, 503, 504) or cannot be reached, twice in a row, the child is
replaced. Any other answer, even the app's own 404 or 500, proves the path
edge -> ssh -> Service works.

Requests run on a small thread pool so a slow edge never stalls the
controller's loop; the loop collects the answers on its next turn.
"""

import concurrent.futures
import logging
import time

import requests

log = logging.getLogger(__name__)
NO_TUNNEL = (502, 503, 504)


def probe_once(url_template, dnsname, timeout):
    """True if the answer came through the tunnel, False if the edge says it has none."""
    url = url_template.replace("{dnsname}", dnsname)
    headers = {} if "{dnsname}" in url_template else {"Host": dnsname}
    try:
        resp = requests.get(url, headers=headers, timeout=timeout, allow_redirects=False, stream=True)
        resp.close()
    except requests.RequestException:
        return False
    return resp.status_code not in NO_TUNNEL


class Prober:
    def __init__(self, url_template, *, interval=10.0, failures=2, timeout=5.0, clock=time.monotonic,
                 check=probe_once, workers=4):
        self.url_template = url_template
        self.interval = interval
        self.failures_needed = failures
        self.timeout = timeout
        self.clock = clock
        self.check = check
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._pending = {}      # key -> future
        self._next = {}         # key -> when to probe next
        self._failures = {}     # key -> consecutive failures

    def stale(self, targets):
        """Start due probes for {key: dnsname}; return the keys whose tunnel is proven stale."""
        now = self.clock()
        stale = []
        for key in (set(self._pending) | set(self._next)) - set(targets):
            self._forget(key)
        for key, future in list(self._pending.items()):
            if not future.done():
                continue
            del self._pending[key]
            if future.result():
                self._failures.pop(key, None)
                continue
            n = self._failures[key] = self._failures.get(key, 0) + 1
            if n >= self.failures_needed:
                stale.append(key)
                self._forget(key)
                self._next[key] = now + 2 * self.interval     # let the new child come up first
        for key, dnsname in targets.items():
            if key not in self._pending and now >= self._next.setdefault(key, now + self.interval):
                self._next[key] = now + self.interval
                self._pending[key] = self.pool.submit(self.check, self.url_template, dnsname, self.timeout)
        return stale

    def _forget(self, key):
        self._pending.pop(key, None)
        self._failures.pop(key, None)
        self._next.pop(key, None)

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
