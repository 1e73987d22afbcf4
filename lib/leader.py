"""Leader election with a coordination.k8s.io Lease, and the fence that every write checks.

The algorithm is client-go's: the holder renews `spec.renewTime` every
`renew_every` seconds; another replica may take the Lease once it has seen
the same record unchanged for `lease_seconds` by its own clock (so no two
clocks are compared); writes carry the resourceVersion, so two candidates
racing for an expired Lease cannot both win. On a clean stop the holder
releases the Lease and the standby takes over within `retry_every`.

Leadership has three states, so the runner can decide per kind of work:

- LEADING: the Lease was renewed less than `renew_deadline` ago (measured
  from when the renewing request was sent). Only then may anything shared be
  changed: sockets and tunnels created or deleted, Services written. The
  deadline is shorter than the lease, so a leader that cannot renew stops
  writing before any standby can take over, even if its renewing thread is
  stuck: `state()` reads the clock, not a flag the thread would have to clear.
- UNCONFIRMED: it led, the deadline passed (the apiserver is unreachable, the
  process was frozen, or it let the Lease go), and no other holder has been
  seen. Its ssh children keep the public names up through a control-plane
  outage, but nothing shared is touched until a renew succeeds again.
- STANDBY: another holder was seen (or it never led).

A replica that is not fit to lead (its loop is stuck, it cannot log in) does
not take the Lease, and a leader that becomes unfit releases it so that a
standby can serve.
"""

import logging
import socket
import threading
import time
import uuid

from lib.apierrors import Conflict, KubeError
from lib.leases import Leases, now_micro

log = logging.getLogger(__name__)

LEADING, UNCONFIRMED, STANDBY = "leading", "unconfirmed", "standby"
_NEVER = float("-inf")


class Fenced(Exception):
    """A write was refused because this replica's leadership is not confirmed."""


class Fence:
    """`check()` before every shared write; without an elector (a single replica) it is always open.

    Checked twice: when a write is decided (on the loop), and again by the thread that sends it, just
    before each attempt goes out (lib/remote.py, lib/mysocket.py's `guard`): a call that waited in the
    pool, or a DELETE retried after a 5xx seconds later, is not sent once the renew deadline passed.
    """

    def __init__(self, elector=None):
        self.elector = elector

    def is_open(self):
        return self.elector is None or self.elector.state() == LEADING

    def check(self):
        if not self.is_open():
            raise Fenced(f"not a confirmed leader ({self.elector.state()})")


class LeaderElector(threading.Thread):
    def __init__(self, rest, namespace, name, *, identity=None, lease_seconds=10, renew_deadline=None,
                 renew_every=2.0, retry_every=1.0, clock=time.monotonic, fit=lambda: True):
        super().__init__(name="leader-election", daemon=True)
        renew_deadline = lease_seconds * 0.7 if renew_deadline is None else renew_deadline
        if not renew_every < renew_deadline < lease_seconds:
            raise ValueError("the renew deadline must be longer than the renew period and shorter than the lease")
        self.leases = Leases(rest, namespace)
        self.namespace = namespace
        self.lease_name = name
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.clock = clock
        self.fit = fit                  # () -> bool: may this replica lead right now?
        self._held = False              # led, and no other holder seen since
        self._renewed_at = _NEVER       # clock() when the last successful renew was sent
        self._stopping = threading.Event()
        self._observed = None           # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._leader_seen = None        # for one log line per change of leader
        self._release_on_stop = True

    def state(self):
        if not self._held:
            return STANDBY
        if self.clock() - self._renewed_at < self.renew_deadline:
            return LEADING
        return UNCONFIRMED

    def is_leader(self):
        return self.state() == LEADING

    def stop(self, release=True):
        self._release_on_stop = release
        self._stopping.set()
        self.join(timeout=5)

    def run(self):
        log.info("leader election: candidate %s for Lease %s/%s", self.identity, self.namespace, self.lease_name)
        while not self._stopping.is_set():
            self.step()
            self._stopping.wait(self.renew_every if self.state() == LEADING else self.retry_every)
        if self._held and self._release_on_stop:
            self._release()
        self._held = False

    def step(self):
        """One look at the Lease: renew, acquire, release or stand by (a test drives this with a fake clock)."""
        try:
            self._try()
        except KubeError as e:
            if self._held:
                log.warning("cannot renew the Lease (%s); %s", e,
                            "still leading" if self.state() == LEADING else
                            "not writing anything until it is renewed or another holder is seen")

    def _try(self):
        sent = self.clock()
        fit = self.fit()
        lease = self.leases.get(self.lease_name)
        if lease is None:
            if fit:
                try:
                    self.leases.create(self.lease_name, self._spec(transitions=0, acquired=now_micro()))
                except Conflict:
                    return                  # another candidate made it first: look again next time
                self._renewed(sent)
            return
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        expired = self.clock() - self._observed_at >= (spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and not expired:
            self._other_holder(holder)
            return
        mine = holder == self.identity
        if not fit:
            if mine:
                log.warning("not fit to lead (loop stuck or not logged in): releasing the Lease")
                self._release(lease)
            return
        new = self._spec(transitions=(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
                         acquired=spec.get("acquireTime") if mine and spec.get("acquireTime") else now_micro())
        try:
            self.leases.replace(self.lease_name, lease, new)     # carries its resourceVersion: a racer gets 409
        except Conflict:
            return
        self._renewed(sent)

    def _spec(self, transitions, acquired):
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired, "renewTime": now_micro(), "leaseTransitions": transitions}

    def _renewed(self, sent):
        if not self._held or self.state() != LEADING:
            log.info("became the leader" if not self._held else "leadership confirmed again",
                     extra={"identity": self.identity})
        self._held = True
        self._renewed_at = sent
        self._leader_seen = self.identity

    def _other_holder(self, holder):
        if self._held:
            log.warning("lost the Lease to %s", holder, extra={"identity": self.identity})
        self._held = False
        self._renewed_at = _NEVER
        if holder != self._leader_seen:
            log.info("standing by; the leader is %s", holder, extra={"identity": self.identity})
        self._leader_seen = holder

    def _release(self, lease=None):
        """Let a standby take over at once instead of after lease_seconds; writes stop before the request."""
        self._renewed_at = _NEVER
        try:
            lease = lease or self.leases.get(self.lease_name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                released = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now_micro()}
                self.leases.replace(self.lease_name, lease, released)
                log.info("released the Lease")
        except KubeError as e:
            log.warning("could not release the Lease (%s); a standby takes over when it expires", e)
