"""The controller's one loop: session, work queue, supervisor, resync.

One thread makes every decision, so nothing here needs a lock; the watch
thread only fills the cache and the queue, the health thread only reads.
The loop never waits longer than a quarter of a second, so a dead ssh child
is seen within that time; SIGTERM sets a flag and wakes the queue, so it is
noticed at once.

Bad credentials are not a crash: the loop stays up, /readyz says not ready,
and the login is tried again with backoff (logged once per attempt), while the
Services wait in the queue.
"""

import logging
import os
import time

from lib import metrics, mysocket, sshkeys

log = logging.getLogger(__name__)


class Session:
    """Logged in, or when to try again."""

    def __init__(self, api, public_key, clock=time.monotonic, cap=300.0):
        self.api = api
        self.public_key = public_key
        self.clock = clock
        self.cap = cap
        self.ok = False
        self.user_name = None
        self.failures = 0
        self.next_try = 0.0
        self.problem = "not logged in yet"

    def ensure(self):
        if self.ok:
            return True
        if self.clock() < self.next_try:
            return False
        try:
            user_id = self.api.login()
            user = self.api.user() or {}
        except mysocket.ApiError as e:
            self.lost(e)
            return False
        self.user_name = user.get("user_name") or str(user_id).replace("-", "")
        if user.get("sshkey") and not sshkeys.same_key(user["sshkey"], self.public_key):
            log.warning("the private key does not match the public key registered for %s: "
                        "the edge will refuse the tunnels", self.api.email)
        self.ok, self.failures, self.problem = True, 0, ""
        log.info("logged in to the Mysocket API", extra={"email": self.api.email, "user_name": self.user_name})
        return True

    def lost(self, error):
        self.ok = False
        self.failures += 1
        delay = min(self.cap, 2.0 ** (self.failures - 1))
        self.next_try = self.clock() + delay
        self.problem = str(error)
        level = logging.ERROR if isinstance(error, mysocket.BadCredentials) else logging.WARNING
        log.log(level, "cannot log in: %s; trying again in %.0fs", error, delay)


class Runner:
    def __init__(self, *, config, session, controller, watcher, supervisor, queue, known_hosts, leader=None,
                 prober=None):
        self.config = config
        self.session = session
        self.controller = controller
        self.watcher = watcher
        self.supervisor = supervisor
        self.queue = queue
        self.known_hosts = known_hosts
        self.leader = leader
        self.prober = prober
        self.heartbeat = time.monotonic()
        self._next_tick = 0.0
        self._next_resync = None
        self._host_keys = set()
        self._known_hosts_size = -1

    # -- for /healthz and /readyz ------------------------------------------------

    def alive(self):
        return time.monotonic() - self.heartbeat < 120 and self.watcher.is_alive()

    def readiness(self):
        """(ready, reason): logged in and watching; a standby replica is ready too."""
        if not self.session.ok:
            return False, f"not logged in: {self.session.problem}"
        if not self.watcher.synced.is_set():
            return False, "Services not listed yet"
        if not self.watcher.watching:
            return False, "Service watch is not running"
        return True, "leader" if self.leading() else "standby"

    def leading(self):
        return self.leader is None or self.leader.is_leader()

    # -- the loop ----------------------------------------------------------------------

    def run(self, stopping):
        ended = self.supervisor.end_leftovers()
        if ended:
            log.info("ended %d ssh children left by an earlier run", ended)
        self.watcher.start()
        if self.leader:
            self.leader.start()
        try:
            while not stopping.is_set():
                self.heartbeat = time.monotonic()
                self._step(stopping)
        finally:
            log.info("stopping: ending %d ssh children; nothing remote is deleted", len(self.supervisor.children))
            self.watcher.stop()
            self.supervisor.stop_all()
            if self.leader:
                self.leader.stop()          # after the children: the next leader's forwards find the ports free
            if self.prober:
                self.prober.close()

    def _step(self, stopping):
        if not self.session.ensure() or not self.watcher.synced.is_set():
            stopping.wait(0.2)
            return
        if not self.leading():
            self._stand_by(stopping)
            return
        metrics.LEADER.set(1)
        self.controller.user_name = self.session.user_name
        key = self.queue.get(timeout=0.25)
        if key is not None:
            try:
                self.controller.reconcile(key)
            except mysocket.BadCredentials as e:
                self.session.lost(e)
                self.queue.add(key, 1.0)
        self._tick()

    def _stand_by(self, stopping):
        """Not the leader: run nothing, forget everything, keep the cache warm for a quick take-over."""
        metrics.LEADER.set(0)
        if self.supervisor.children or self.controller.records:
            log.warning("not the leader (any more): stopping all ssh children")
            self.supervisor.stop_all()
            self.controller.records.clear()
            self._next_resync = None
            for key in self.watcher.keys():
                self.queue.add(key)
        stopping.wait(0.5)

    def _tick(self):
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + 0.25
        for transition in self.supervisor.poll():
            self.controller.on_transition(transition)
        metrics.TUNNELS_UP.set(self.supervisor.tunnels_up())
        if self.prober:
            self._probe()
        self._log_new_host_keys()
        if self._next_resync is None and len(self.queue) == 0:
            self._next_resync = now          # the first pass is done: clean up now
        if self._next_resync is not None and now >= self._next_resync:
            try:
                self.controller.resync()
                self._next_resync = now + self.config.resync_seconds
            except mysocket.BadCredentials as e:
                self.session.lost(e)
            except mysocket.ApiError as e:
                log.warning("resync failed (%s); trying again in 30s", e)
                self._next_resync = now + 30

    def _probe(self):
        targets = {key: r.dnsname for key, r in self.controller.records.items()
                   if self.supervisor.is_up(key) and r.exposure.socket_type == "http"
                   and not r.exposure.protected_secret}
        for key in self.prober.stale(targets):
            self.controller.tunnel_stale(key)
            self.supervisor.restart(key)

    def _log_new_host_keys(self):
        try:
            size = os.path.getsize(self.known_hosts)
        except OSError:
            return
        if size == self._known_hosts_size:
            return
        self._known_hosts_size = size
        for fp in sshkeys.fingerprints(self.known_hosts):
            if fp not in self._host_keys:
                self._host_keys.add(fp)
                log.info("edge host key %s (%s)", fp, "from known_hosts" if self.config.known_hosts
                         else "trusted on first use")
