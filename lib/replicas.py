"""Which replicas are alive, so the leader removes the tunnels of a replica gone for good, and no other.

Every replica holds its own tunnel for every exposed Service, tagged with an
owner `<cluster>/<namespace>/<service>/<replica>` (the edge keeps the tag,
edge/README.md). A replica that dies leaves its tunnels behind: harmless
while the edge skips them, clutter (and quota) for good. So each replica
proves it is alive with a Lease of its own, renewed every few seconds and
deleted when it stops cleanly, and the leader deletes a tunnel of this
cluster only when its replica's Lease is gone, or has not changed for
`lease_seconds` as the leader's own clock sees it (the elector's rule: no
two clocks are compared, and a leader that just took over waits a whole
lease before it calls anything stale).

A replica's name is stable across restarts of the same pod (its hostname and
its state directory), so a restarted container finds its own tunnels again
instead of making new ones.
"""

import dataclasses
import hashlib
import logging
import socket
import threading
import time

from lib.apierrors import KubeError
from lib.leases import Leases, now_micro

log = logging.getLogger(__name__)

LABELS = {"app.kubernetes.io/name": "mysocketd", "app.kubernetes.io/component": "replica"}


def replica_name(state_dir):
    return f"{socket.gethostname()}-{hashlib.sha256(state_dir.encode()).hexdigest()[:6]}"


@dataclasses.dataclass(frozen=True)
class TunnelOwner:
    """Whose a tunnel is. Cluster first, then namespace: a prefix names all of a cluster's (or a
    namespace-scoped controller's) tunnels, which is what the edge's sparing delete takes."""

    cluster: str
    namespace: str
    name: str
    replica: str

    @property
    def tag(self):
        return f"{self.cluster}/{self.namespace}/{self.name}/{self.replica}"

    @property
    def key(self):
        return self.namespace, self.name

    @classmethod
    def parse(cls, tag):
        parts = (tag or "").split("/")
        return cls(*parts) if len(parts) == 4 and all(parts) else None


def _lease_name(cluster, replica):
    return "mysocketd-replica-" + hashlib.sha256(f"{cluster}/{replica}".encode()).hexdigest()[:16]


class ReplicaLease(threading.Thread):
    """This replica's proof of life: its own Lease, renewed every `renew_every` s, deleted on a clean stop."""

    def __init__(self, rest, namespace, cluster, replica, *, lease_seconds=30, renew_every=5.0):
        super().__init__(name="replica-lease", daemon=True)
        self.leases = Leases(rest, namespace)
        self.holder = f"{cluster}/{replica}"
        self.name = _lease_name(cluster, replica)
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.renewed = threading.Event()    # renewed at least once (tunnels are made only after)
        self._stopping = threading.Event()
        self._problem = None                # said once per change, not every renew_every

    def run(self):
        while not self._stopping.is_set():
            try:
                self._renew()
                self.renewed.set()
                if self._problem:
                    log.info("renewed this replica's Lease again")
                self._problem = None
            except KubeError as e:
                if str(e) != self._problem:
                    log.warning("cannot renew this replica's Lease (%s); trying again every %gs", e,
                                self.renew_every)
                self._problem = str(e)
            self._stopping.wait(self.renew_every)

    def _renew(self):
        spec = {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_seconds, "renewTime": now_micro()}
        lease = self.leases.get(self.name)
        if lease is None:
            self.leases.create(self.name, spec, labels=LABELS)
        else:
            self.leases.replace(self.name, lease, spec)

    def stop(self):
        """A clean stop: the Lease goes, so the leader may remove this replica's tunnels at once."""
        self._stopping.set()
        self.join(timeout=5)
        try:
            self.leases.delete(self.name)
        except KubeError as e:
            log.info("could not delete this replica's Lease (%s); it expires", e)


class Liveness:
    """The leader's view of which replicas of this cluster live (see the module docstring)."""

    def __init__(self, rest, namespace, *, lease_seconds=30, clock=time.monotonic):
        self.store = Leases(rest, namespace)
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._seen = {}             # holder -> (renewTime, when that value was first seen)
        self._names = {}            # holder -> the Lease's name
        self._listed = False

    def list(self):
        """The replicas' Leases (a call: the sweep makes it off the loop, then hands the answer to `update`)."""
        return self.store.list(LABELS)

    def refresh(self):
        self.update(self.list())

    def update(self, items):
        """Take a fresh list of the replicas' Leases into account (on the loop: no call)."""
        now, seen, names = self.clock(), {}, {}
        for lease in items or []:
            spec = lease.get("spec") or {}
            holder, renewed = spec.get("holderIdentity") or "", spec.get("renewTime")
            names[holder] = lease["metadata"]["name"]
            before = self._seen.get(holder)
            seen[holder] = before if before and before[0] == renewed else (renewed, now)
        self._seen, self._names, self._listed = seen, names, True

    def leases(self, cluster):
        """{replica: Lease name} of this cluster's replicas, as last listed."""
        return {holder.split("/", 1)[1]: name for holder, name in self._names.items()
                if holder.startswith(f"{cluster}/")}

    def gone(self, cluster, replica):
        """True only when provably gone: no Lease at all (after a list), or one unchanged for a whole lease."""
        if not self._listed:
            return False
        seen = self._seen.get(f"{cluster}/{replica}")
        return seen is None or self.clock() - seen[1] >= self.lease_seconds

    def forget(self):
        """A new leader: no history, so nothing is stale before a whole lease has been watched."""
        self._seen, self._names, self._listed = {}, {}, False
