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

Cost grows with what is exposed, not with the cluster. Every list is paged
(lib/kube.py). The cache keeps in full only the Services that concern
mysocketd (asked for, or carrying anything it wrote: lib/services.concerns_us);
of the others it keeps the name and uid (so the sweep knows they exist) and
queues nothing. EndpointSlices are one filtered watch: a slice is kept as two
numbers (its Service and how many ready endpoints it lists), and a change
queues its Service only when that Service concerns mysocketd, so a pod churning
in a Service nobody exposed costs one parsed event and no reconcile.

This thread only writes the cache and queues keys; every decision is the
controller's.
"""

import logging
import threading

from lib import metrics
from lib.apierrors import Gone, KubeError, Silent
from lib.kube import ENDPOINT_SLICES, SERVICES
from lib.services import UPSTREAM_PROTOCOL, concerns_us, key_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"     # on every EndpointSlice of a headless Service
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"    # the one that sets HEADLESS_LABEL

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
        self._ours = set()                  # keys of the cached objects that concern mysocketd
        self.also_read = None               # key -> bool: a Service another reader needs (set by mysocketd.py)

    def get(self, key):
        with self._lock:
            return self.cache.get(key)

    def keys(self):
        """The keys of the Services that concern mysocketd (the rest are never reconciled)."""
        with self._lock:
            return list(self._ours)

    def concerns(self, key):
        with self._lock:
            return key in self._ours

    def read_elsewhere(self, key):
        """True for a Service the route controller reads (a backend of a route or an Ingress,
        lib/routecontroller.py): a change to it is queued although it does not concern mysocketd itself."""
        return self.also_read is not None and self.also_read(key)

    def keep(self, obj):
        """(what the cache keeps of obj, whether it concerns mysocketd).

        Of the rest only what a route's backend needs (type, ClusterIP, ports): a few hundred bytes a
        Service, where the whole object would be kilobytes in a cluster of thousands."""
        if concerns_us(obj):
            return obj, True
        meta, spec = obj["metadata"], obj.get("spec") or {}
        slim = {k: spec[k] for k in ("type", "clusterIP") if k in spec}
        slim["ports"] = [{k: p[k] for k in ("name", "port", "protocol", "appProtocol") if k in p}
                         for p in spec.get("ports") or []]
        kept = {k: meta.get(k) for k in ("namespace", "name", "uid", "resourceVersion")}
        protocol = (meta.get("annotations") or {}).get(UPSTREAM_PROTOCOL)
        if protocol is not None:            # what a route's backend port speaks (lib/services.backend_protocol)
            kept["annotations"] = {UPSTREAM_PROTOCOL: protocol}
        return {"metadata": kept, "spec": slim}, False

    def stop(self):
        self._stopping.set()

    def queued_key(self, obj):
        """The key of the Service a change to obj concerns."""
        return key_of(obj)

    def relisted(self, cache):
        """A fresh list replaced the cache (for an index kept beside it)."""

    def changed(self, kind, key, kept):
        """One watch event was applied to the cache (for an index kept beside it)."""

    def run(self):
        failures = 0
        while not self._stopping.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch()
                failures = 0
            except Gone:
                self.watching = False
                self._gone()
            except (KubeError, ValueError) as e:
                self.watching = False
                status = getattr(e, "status", None)
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
        fresh, ours, queued = {}, set(), set()
        for obj in items:
            kept, concerned = self.keep(obj)
            fresh[key_of(obj)] = kept
            if concerned:
                ours.add(key_of(obj))
            if concerned or self.read_elsewhere(key_of(obj)):
                queued.add(self.queued_key(obj))
        with self._lock:
            gone = {k: v for k, v in self.cache.items() if k not in fresh}
            queued |= {self.queued_key(v) for k, v in gone.items() if k in self._ours}
            self.cache, self._ours = fresh, ours
        self.resource_version = rv
        self.relisted(fresh)
        for key in queued - {None}:
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
                    kept, concerned = self.keep(obj)
                    with self._lock:
                        was = key in self._ours
                        if kind == "DELETED":
                            self.cache.pop(key, None)
                            self._ours.discard(key)
                        else:
                            self.cache[key] = kept
                            (self._ours.add if concerned else self._ours.discard)(key)
                    self.changed(kind, key, kept)
                    queued = self.queued_key(obj)
                    if queued is not None and (concerned or was or self.read_elsewhere(key)):
                        self.queue.add(queued)
                self.resource_version = obj.get("metadata", {}).get("resourceVersion") or self.resource_version
                if self._stopping.is_set():
                    break
        except Silent:
            log.info("the %s watch was silent for %gs; resuming", self.WHAT, self.idle_timeout,
                     extra={"resource_version": self.resource_version})
            metrics.WATCH_RESTARTS.labels("idle").inc()
            return
        finally:
            self.watching = False
        metrics.WATCH_RESTARTS.labels("timeout").inc()


class EndpointSliceWatcher(ServiceWatcher):
    """The EndpointSlices in scope, so a tunnel takes traffic only while its Service has a ready endpoint.

    One filtered watch of every slice: each is kept as (its Service, its ready endpoints), and a change
    queues its Service only when `services` (the Service watcher) says that Service concerns mysocketd.
    """

    KIND, WHAT = ENDPOINT_SLICES, "EndpointSlice"

    def __init__(self, kube, queue, services=None, **kwargs):
        super().__init__(kube, queue, **kwargs)
        self.services = services            # ServiceWatcher: whose slices are worth a reconcile
        self._by_service = {}               # Service key -> {slice key: ready endpoints}
        self._service_of = {}               # slice key -> Service key

    def keep(self, obj):
        """(its Service, its ready endpoints, the slice's addresses and ports if its Service is headless:
        a route forwards to each endpoint of one, lib/routesockets.forward_targets)."""
        ready = sum(1 for e in obj.get("endpoints") or [] if (e.get("conditions") or {}).get("ready") is not False)
        service = self.queued_key(obj)
        headless = None
        labels = (obj.get("metadata") or {}).get("labels") or {}
        # Slices someone else maintains (by hand, as the conformance suite's headless-manual-endpointslices)
        # carry no headless label: their addresses are kept too (they are few), and the Service decides.
        if HEADLESS_LABEL in labels or labels.get(MANAGED_BY_LABEL) != SLICE_CONTROLLER:
            headless = {"addressType": obj.get("addressType"), "ports": obj.get("ports") or [],
                        "endpoints": [{"addresses": e.get("addresses") or [], "conditions": e.get("conditions") or {}}
                                      for e in obj.get("endpoints") or []]}
        concerned = service is not None and (self.services is None or self.services.concerns(service)
                                             or self.services.read_elsewhere(service))
        return (service, ready, headless), concerned

    def queued_key(self, obj):
        if isinstance(obj, tuple):
            return obj[0]
        service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        return (obj["metadata"]["namespace"], service) if service else None

    def relisted(self, cache):
        index = {}
        for key, (service, ready, _) in cache.items():
            if service is not None:
                index.setdefault(service, {})[key] = ready
        with self._lock:
            self._by_service = index
            self._service_of = {key: service for service, slices in index.items() for key in slices}

    def changed(self, kind, key, kept):
        service, ready, _ = kept
        with self._lock:
            before = self._service_of.pop(key, None)
            if before is not None:
                slices = self._by_service.get(before, {})
                slices.pop(key, None)
                if not slices:
                    self._by_service.pop(before, None)
            if kind != "DELETED" and service is not None:
                self._by_service.setdefault(service, {})[key] = ready
                self._service_of[key] = service

    def headless_slices(self, key):
        """The addresses and ports of the headless Service `key`'s EndpointSlices ([] for another)."""
        with self._lock:
            kept = [self.cache.get(k) for k in self._by_service.get(tuple(key), {})]
            return [k[2] for k in kept if k is not None and k[2] is not None]

    def ready(self, key):
        """How many ready endpoints the Service `key` has; None when it has no EndpointSlice at all
        (a Service without a selector, or a cluster where nothing maintains them): then unknown."""
        with self._lock:
            slices = self._by_service.get(tuple(key))
            return None if not slices else sum(slices.values())
