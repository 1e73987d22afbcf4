"""Does each tunnel still carry traffic? Ask the edge's public side.

A dead ssh child is seen at once (its exit), a dead connection within the
keepalive window (ServerAliveInterval x ServerAliveCountMax). What neither
sees is a child that is alive but no longer forwards: frozen, wedged, or
holding a session the edge has already given up on. So, when --probe-url is
set, every up tunnel of an unprotected http socket is fetched through the
public edge now and then; only when the edge itself answers that it has no
tunnel for the name (the header `Mysocket-Edge: no-tunnel`, which the edge
puts on its own answers and never on the app's) twice in a row is the child
replaced.

Anything else proves nothing against the tunnel: the app's own 502 or 503 is
the path edge -> ssh -> Service working, and an error of the probe's own (DNS,
egress blocked, TLS, a timeout) is "unknown", which neither counts as a
failure nor resets the count.

Requests run on a small thread pool so a slow edge never stalls the
controller's loop; the loop collects the answers on its next turn.
"""

import concurrent.futures
import logging
import time

import requests

log = logging.getLogger(__name__)
EDGE_HEADER = "Mysocket-Edge"


def probe_once(url_template, dnsname, timeout):
    """True: the answer came through; False: the edge says it has no tunnel; None: unknown."""
    url = url_template.replace("{dnsname}", dnsname)
    headers = {} if "{dnsname}" in url_template else {"Host": dnsname}
    try:
        resp = requests.get(url, headers=headers, timeout=timeout, allow_redirects=False, stream=True)
        resp.close()
    except requests.RequestException:
        return None
    return verdict(resp.status_code, resp.headers.get(EDGE_HEADER))


def verdict(status, edge_reason):
    """What one answer says about the tunnel (pure, table-tested)."""
    if edge_reason is None:
        return True                 # the app answered, whatever it said: the path works
    if edge_reason.strip().lower() == "no-tunnel":
        return False
    return None                     # the edge's other answers (auth, limits, ...) say nothing about it


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
            result = future.result()
            if result is None:
                continue                    # unknown: neither a failure nor a success
            if result:
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
