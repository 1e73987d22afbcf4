"""List, then watch Services, keeping a cache and feeding the work queue.

As in kopf's clients/watching.py: a list gives the full state and a
resourceVersion; the watch continues from there. 410 Gone, a stream the server
ended, a silent stream cut by the read timeout, and a refused connection are
all normal: the watch resumes from the last resourceVersion it saw, or lists
again when that is gone. After a relist, Services missing from the new list
are reported as deleted, so a controller that was away (or frozen) catches up.

The cache holds the newest dict of every Service in scope; the controller
reads it and never lists on its own. This thread only writes the cache and
queues keys; every decision is the controller's.
"""

import logging
import threading

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from lib import metrics
from lib.kube import Gone
from lib.services import key_of

log = logging.getLogger(__name__)


class ServiceWatcher(threading.Thread):
    def __init__(self, kube, queue, *, backoff_cap=5.0):
        super().__init__(name="service-watch", daemon=True)
        self.kube = kube
        self.queue = queue
        self.backoff_cap = backoff_cap
        self.cache = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()     # the first list is in the cache
        self.watching = False               # a watch stream is open right now
        self._stopping = threading.Event()

    def get(self, key):
        with self._lock:
            return self.cache.get(key)

    def keys(self):
        with self._lock:
            return list(self.cache)

    def stop(self):
        self._stopping.set()

    def run(self):
        failures = 0
        rv = None
        while not self._stopping.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                rv = self._watch(rv)
                failures = 0
            except Gone:
                log.info("watch resourceVersion expired (410 Gone); listing again")
                metrics.WATCH_RESTARTS.labels("gone").inc()
                rv = None
            except (ApiException, HTTPError, OSError, ValueError) as e:
                self.watching = False
                failures += 1
                delay = min(self.backoff_cap, 0.5 * 2 ** (failures - 1))
                status = getattr(e, "status", None)
                reason = f"HTTP {status}" if status else e.__class__.__name__
                # Once per backoff step, never in a hot loop.
                log.warning("Service watch failed (%s); retrying in %.1fs", reason, delay)
                metrics.WATCH_RESTARTS.labels("error").inc()
                if status == 410:
                    rv = None
                self._stopping.wait(delay)

    def _relist(self):
        items, rv = self.kube.list_services()
        fresh = {key_of(s): s for s in items}
        with self._lock:
            gone = set(self.cache) - set(fresh)
            self.cache = fresh
        for key in list(fresh) + list(gone):
            self.queue.add(key)
        self.synced.set()
        log.info("listed %d Services", len(fresh), extra={"resource_version": rv, "deleted_meanwhile": len(gone)})
        return rv

    def _watch(self, rv):
        self.watching = True
        try:
            for kind, obj in self.kube.watch_services(rv):
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if kind == "BOOKMARK":
                    continue
                key = key_of(obj)
                with self._lock:
                    if kind == "DELETED":
                        self.cache.pop(key, None)
                    else:
                        self.cache[key] = obj
                self.queue.add(key)
                if self._stopping.is_set():
                    break
        finally:
            self.watching = False
        metrics.WATCH_RESTARTS.labels("timeout").inc()
        return rv
