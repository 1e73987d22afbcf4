"""List, then watch Services (and their EndpointSlices), keeping a cache and feeding the work queue.

As in kopf's clients/watching.py: a list gives the full state and a
resourceVersion; the watch continues from there. 410 Gone, a stream the server
ended, a silent stream cut by the read timeout, and a refused connection are
all normal: the watch resumes from the newest resourceVersion it saw (from an
event or a bookmark, even on a stream that then broke), or lists again when
that is gone. After a relist, Services missing from the new list are reported
as deleted, so a controller that was away (or frozen) catches up.

A silent stream is routine, not a failure: the apiserver sends a bookmark only
when its resourceVersion moved past the watch's, so on a quiet cluster a
healthy stream says nothing until the server ends it. The idle timeout (the
read timeout) is also the only way out of a flow that a middlebox dropped
without closing. Either way the watch resumes at once, without backoff.

The cache holds the newest dict of every object in scope; the controller
reads it and never lists on its own. This thread only writes the cache and
queues keys; every decision is the controller's. A change to an EndpointSlice
queues the Service it belongs to (its label kubernetes.io/service-name).
"""

import logging
import threading

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ReadTimeoutError

from lib import metrics
from lib.kube import ENDPOINT_SLICES, SERVICES, Gone
from lib.services import key_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

log = logging.getLogger(__name__)


class ServiceWatcher(threading.Thread):
    KIND, WHAT = SERVICES, "Service"

    def __init__(self, kube, queue, *, backoff_cap=5.0, idle_timeout=90.0, watch_timeout=240):
        super().__init__(name=f"{self.WHAT.lower()}-watch", daemon=True)
        self.kube = kube
        self.queue = queue
        self.backoff_cap = backoff_cap
        self.idle_timeout = idle_timeout        # seconds without a byte before a stream counts as dead
        self.watch_timeout = watch_timeout      # the server ends each watch after this many seconds
        self.cache = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()     # the first list is in the cache
        self.watching = False               # a watch stream is open right now
        self.resource_version = None        # the newest one seen; None: list again
        self._stopping = threading.Event()

    def get(self, key):
        with self._lock:
            return self.cache.get(key)

    def keys(self):
        with self._lock:
            return list(self.cache)

    def stop(self):
        self._stopping.set()

    def queued_key(self, obj):
        """The key of the Service a change to obj concerns."""
        return key_of(obj)

    def run(self):
        failures = 0
        while not self._stopping.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch()
                failures = 0
            except Gone:
                self._gone()
            except (ApiException, HTTPError, OSError, ValueError) as e:
                self.watching = False
                status = getattr(e, "status", None)
                if status == 410:               # Gone as the HTTP answer rather than as an ERROR event
                    self._gone()
                    continue
                failures += 1
                delay = min(self.backoff_cap, 0.5 * 2 ** (failures - 1))
                reason = f"HTTP {status}" if status else e.__class__.__name__
                # Once per backoff step, never in a hot loop.
                log.warning("%s watch failed (%s); retrying in %.1fs", self.WHAT, reason, delay)
                metrics.WATCH_RESTARTS.labels("error").inc()
                self._stopping.wait(delay)

    def _gone(self):
        log.info("watch resourceVersion expired (410 Gone); listing again")
        metrics.WATCH_RESTARTS.labels("gone").inc()
        self.resource_version = None

    def _relist(self):
        items, rv = self.kube.list(self.KIND)
        fresh = {key_of(s): s for s in items}
        with self._lock:
            gone = {k: v for k, v in self.cache.items() if k not in fresh}
            self.cache = fresh
        self.resource_version = rv
        for key in {self.queued_key(o) for o in list(fresh.values()) + list(gone.values())} - {None}:
            self.queue.add(key)
        self.synced.set()
        log.info("listed %d %ss", len(fresh), self.WHAT,
                 extra={"resource_version": rv, "deleted_meanwhile": len(gone)})

    def _watch(self):
        self.watching = True
        try:
            for kind, obj in self.kube.watch(self.KIND, self.resource_version, timeout_seconds=self.watch_timeout,
                                             idle_timeout=self.idle_timeout):
                if kind != "BOOKMARK":
                    key = key_of(obj)
                    with self._lock:
                        if kind == "DELETED":
                            self.cache.pop(key, None)
                        else:
                            self.cache[key] = obj
                    queued = self.queued_key(obj)
                    if queued is not None:
                        self.queue.add(queued)
                self.resource_version = obj.get("metadata", {}).get("resourceVersion") or self.resource_version
                if self._stopping.is_set():
                    break
        except ReadTimeoutError:
            log.info("the %s watch was silent for %gs; resuming", self.WHAT, self.idle_timeout,
                     extra={"resource_version": self.resource_version})
            metrics.WATCH_RESTARTS.labels("idle").inc()
            return
        finally:
            self.watching = False
        metrics.WATCH_RESTARTS.labels("timeout").inc()


class EndpointSliceWatcher(ServiceWatcher):
    """The EndpointSlices in scope, so a tunnel takes traffic only while its Service has a ready endpoint."""

    KIND, WHAT = ENDPOINT_SLICES, "EndpointSlice"

    def queued_key(self, obj):
        service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        return (obj["metadata"]["namespace"], service) if service else None

    def ready(self, key):
        """How many ready endpoints the Service `key` has; None when it has no EndpointSlice at all
        (a Service without a selector, or a cluster where nothing maintains them): then unknown."""
        with self._lock:
            slices = [s for s in self.cache.values() if self.queued_key(s) == tuple(key)]
        if not slices:
            return None
        return sum(1 for s in slices for e in s.get("endpoints") or []
                   if (e.get("conditions") or {}).get("ready") is not False)
