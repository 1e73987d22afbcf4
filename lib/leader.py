"""Leader election with a coordination.k8s.io Lease, so `replicas: 2` is safe.

The algorithm is client-go's: the holder renews `spec.renewTime` every
`renew_every` seconds; another replica may take the Lease once it has seen
the same record unchanged for `lease_seconds` by its own clock (so no two
clocks are compared); writes carry the resourceVersion, so two candidates
racing for an expired Lease cannot both win. On a clean stop the holder
releases the Lease and the standby takes over within `retry_every`.

One deliberate difference: a leader that cannot reach the apiserver keeps
leading until it sees another holder, instead of stepping down when a renew
deadline passes. Its ssh children keep the public names up through a
control-plane outage or upgrade; a standby can only take over through the
same apiserver, and if a partition lets it, the edge still refuses a second
forward of a port that a live session holds ("port already bound"), so
traffic keeps flowing through the old leader until it sees the new holder
and stops its children.
"""

import datetime
import logging
import socket
import threading
import time
import uuid

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)


def _now_micro():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector(threading.Thread):
    def __init__(self, rest, namespace, name, *, identity=None, lease_seconds=10, renew_every=2.0,
                 retry_every=1.0, clock=time.monotonic):
        super().__init__(name="leader-election", daemon=True)
        self.rest = rest                # lib.kube.Rest
        self.namespace = namespace
        self.lease_name = name
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.clock = clock
        self._leading = threading.Event()
        self._stopping = threading.Event()
        self._observed = None          # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._leader_seen = None       # for one log line per change of leader
        self._release_on_stop = True

    def is_leader(self):
        return self._leading.is_set()

    def stop(self, release=True):
        self._release_on_stop = release
        self._stopping.set()
        self.join(timeout=5)

    def run(self):
        log.info("leader election: candidate %s for Lease %s/%s", self.identity, self.namespace, self.lease_name)
        while not self._stopping.is_set():
            try:
                self._try()
            except (ApiException, HTTPError, OSError) as e:
                if self.is_leader():
                    log.warning("cannot renew the Lease (%s); still leading until another holder is seen",
                                getattr(e, "status", None) or e.__class__.__name__)
            self._stopping.wait(self.renew_every if self.is_leader() else self.retry_every)
        if self.is_leader() and self._release_on_stop:
            self._release()
        self._leading.clear()

    def _path(self, name=""):
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases" + (f"/{name}" if name else "")

    def _read(self):
        return self.rest.json("GET", self._path(self.lease_name))

    def _write(self, lease):
        self.rest.json("PUT", self._path(self.lease_name), body=lease)

    def _try(self):
        try:
            lease = self._read()
        except ApiException as e:
            if e.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.lease_name, "namespace": self.namespace},
                    "spec": self._spec(transitions=0, acquired=_now_micro())}
            self.rest.json("POST", self._path(), body=body)
            self._became(True)
            return
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        expired = self.clock() - self._observed_at >= (spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and not expired:
            self._became(False, holder)
            return
        mine = holder == self.identity
        lease["spec"] = self._spec(
            transitions=(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
            acquired=spec.get("acquireTime") if mine and spec.get("acquireTime") else _now_micro())
        try:
            self._write(lease)      # carries metadata.resourceVersion: a racing candidate gets 409
        except ApiException as e:
            if e.status == 409:
                return
            raise
        self._became(True)

    def _spec(self, transitions, acquired):
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired, "renewTime": _now_micro(), "leaseTransitions": transitions}

    def _became(self, leading, holder=None):
        if leading and not self.is_leader():
            log.info("became the leader", extra={"identity": self.identity})
            self._leading.set()
        elif not leading and self.is_leader():
            log.warning("lost the Lease to %s", holder, extra={"identity": self.identity})
            self._leading.clear()
        if not leading and holder != self._leader_seen:
            log.info("standing by; the leader is %s", holder, extra={"identity": self.identity})
        self._leader_seen = self.identity if leading else holder

    def _release(self):
        """Let the standby take over at once instead of after lease_seconds."""
        try:
            lease = self._read()
            if lease["spec"].get("holderIdentity") == self.identity:
                lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=_now_micro())
                self._write(lease)
                log.info("released the Lease")
        except (ApiException, HTTPError, OSError) as e:
            log.warning("could not release the Lease (%s); the standby takes over when it expires",
                        getattr(e, "status", None) or e.__class__.__name__)
