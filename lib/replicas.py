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
import datetime
import hashlib
import logging
import socket
import threading
import time

from kubernetes.client.exceptions import ApiException

from lib import kube

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


def _now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicaLease(threading.Thread):
    """This replica's proof of life: its own Lease, renewed every `renew_every` s, deleted on a clean stop."""

    def __init__(self, rest, namespace, cluster, replica, *, lease_seconds=30, renew_every=5.0):
        super().__init__(name="replica-lease", daemon=True)
        self.rest = rest
        self.namespace = namespace
        self.holder = f"{cluster}/{replica}"
        self.name = _lease_name(cluster, replica)
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.renewed = threading.Event()    # renewed at least once (tunnels are made only after)
        self._stopping = threading.Event()

    def _path(self, name=""):
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases" + (f"/{name}" if name else "")

    def run(self):
        while not self._stopping.is_set():
            try:
                self._renew()
                self.renewed.set()
            except kube.ERRORS as e:
                log.warning("cannot renew this replica's Lease (%s)", kube.describe_error(e))
            self._stopping.wait(self.renew_every)

    def _renew(self):
        spec = {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_seconds, "renewTime": _now_micro()}
        try:
            lease = self.rest.json("GET", self._path(self.name))
        except ApiException as e:
            if e.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace, "labels": LABELS}, "spec": spec}
            self.rest.json("POST", self._path(), body=body)
            return
        lease["spec"] = spec
        self.rest.json("PUT", self._path(self.name), body=lease)

    def stop(self):
        """A clean stop: the Lease goes, so the leader may remove this replica's tunnels at once."""
        self._stopping.set()
        self.join(timeout=5)
        try:
            self.rest.json("DELETE", self._path(self.name))
        except kube.ERRORS as e:
            log.info("could not delete this replica's Lease (%s); it expires", kube.describe_error(e))


class Liveness:
    """The leader's view of which replicas of this cluster live (see the module docstring)."""

    def __init__(self, rest, namespace, *, lease_seconds=30, clock=time.monotonic):
        self.rest = rest
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._seen = {}             # holder -> (renewTime, when that value was first seen)
        self._names = {}            # holder -> the Lease's name
        self._listed = False

    def refresh(self):
        selector = ",".join(f"{k}={v}" for k, v in LABELS.items())
        body = self.rest.json("GET", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases",
                              query={"labelSelector": selector})
        now, seen, names = self.clock(), {}, {}
        for lease in body.get("items") or []:
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
