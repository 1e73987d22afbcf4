"""The controller's one loop: session, work queue, supervisor, sweep.

One thread makes every decision, so nothing here needs a lock; the watch
thread only fills the cache and the queue, the health thread only reads.
The loop never waits longer than a quarter of a second, so a dead ssh child
is seen within that time; SIGTERM sets a flag and wakes the queue, so it is
noticed at once.

The ssh children are supervised on every turn, whatever else is wrong: not
logged in, not the leader any more, the apiserver away. Decisions about
shared things (sockets, Services) are taken only as a confirmed leader; on
becoming one, every cached view of remote state is dropped first. The sweep
of leftover sockets runs on its own schedule, however many Services wait in
the queue for a retry.

Bad credentials are not a crash: the loop stays up, /readyz says not ready,
and the login is tried again with backoff (logged once per attempt), while the
Services wait in the queue and the replica gives up the Lease.

Nothing on this loop waits on the network for more than a moment: the login
runs on a thread of its own (an edge that accepts and never answers `/login`
holds up only the login, up to ~60 s with its retries), every call a
reconcile or the sweep makes goes through lib/remote.py, the Leases are
renewed by their own threads, and Events are posted by theirs.
"""

import concurrent.futures
import logging
import os
import time

from lib import kube, metrics, mysocket, sshkeys
from lib.controller import SWEEP, TAKE_LEAD
from lib.leader import LEADING, UNCONFIRMED, Fenced
from lib.remote import Pending

log = logging.getLogger(__name__)

SWEEP_SOON = 2.0        # after a tunnel's transition: the edge's list then shows it connected (or not)
SWEEP_SPACING = 15.0    # the least time between two sweeps that transitions bring forward


class Session:
    """Logged in, or when to try again. The login itself runs on a thread of its own: `ensure()` waits
    for it at most `budget` seconds, then says "not yet" and looks again on the next turn."""

    def __init__(self, api, public_key, clock=time.monotonic, cap=300.0, budget=0.25):
        self.api = api
        self.public_key = public_key
        self.clock = clock
        self.cap = cap
        self.budget = budget
        self.ok = False
        self.user_name = None
        self.failures = 0
        self.next_try = 0.0
        self.problem = "not logged in yet"
        self._tried = None              # hash of the credentials of the last attempt (never the values)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="login")
        self._attempt = None            # the login on its way

    def _login(self):
        user_id = self.api.login()
        return user_id, self.api.user() or {}

    def ensure(self):
        if self.ok:
            return True
        if self._attempt is None:
            if self.clock() < self.next_try and not self._credentials_changed():
                return False
            self._tried = self._current_credentials()
            self._attempt = self._pool.submit(self._login)
        try:
            self._attempt.exception(timeout=self.budget)
        except concurrent.futures.TimeoutError:
            self.problem = "logging in: the edge has not answered yet"
            return False
        attempt, self._attempt = self._attempt, None
        try:
            user_id, user = attempt.result()
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

    def _current_credentials(self):
        reader = getattr(self.api, "credentials", None)
        return hash(reader()) if reader else None

    def _credentials_changed(self):
        """A fixed Secret is tried at once, not after the rest of a backoff of up to five minutes."""
        return self._tried is not None and self._current_credentials() != self._tried

    def lost(self, error):
        self.ok = False
        self.failures += 1
        delay = min(self.cap, 2.0 ** (self.failures - 1))
        self.next_try = self.clock() + delay
        self.problem = str(error)
        level = logging.ERROR if isinstance(error, mysocket.BadCredentials) else logging.WARNING
        log.log(level, "cannot log in: %s; trying again in %.0fs", error, delay)


class Runner:
    """The loop: supervise always; decide only as a confirmed leader (see lib/leader.py's three states)."""

    STUCK_AFTER = 30.0          # a loop that has not turned for this long is not fit to lead

    def __init__(self, *, config, session, controller, watcher, supervisor, queue, known_hosts, leader=None,
                 prober=None, companions=()):
        self.config = config
        self.session = session
        self.controller = controller
        self.watcher = watcher
        self.supervisor = supervisor
        self.queue = queue
        self.known_hosts = known_hosts
        self.leader = leader
        self.prober = prober
        self.companions = list(companions)  # threads that run beside the loop: the EndpointSlice watch, the
        self.heartbeat = time.monotonic()   # replica's Lease (each has start() and stop())
        self._next_tick = 0.0
        self._next_count = 0.0
        self._acting = False        # took the lead (caches dropped, inventory loaded) since it last led
        self._next_sweep = None
        self._last_sweep = float("-inf")
        self._host_keys = set()
        self._known_hosts_size = -1
        self._last_surprise = None
        self._lead_problem = None   # said once until it changes

    # -- for /healthz, /readyz and the elector ------------------------------------

    def alive(self):
        return time.monotonic() - self.heartbeat < 120 and self.watcher.is_alive()

    def fit_to_lead(self):
        """Logged in and turning: a replica that is neither must not hold the Lease."""
        return self.session.ok and time.monotonic() - self.heartbeat < self.STUCK_AFTER

    def readiness(self):
        """(ready, reason): logged in and watching; a standby replica is ready too."""
        if not self.session.ok:
            return False, f"not logged in: {self.session.problem}"
        if not self.watcher.synced.is_set():
            return False, "Services not listed yet"
        if not self.watcher.watching:
            return False, "Service watch is not running"
        state = self.leadership()
        if state == UNCONFIRMED:
            return True, "leader, unconfirmed: serving, but not changing anything until the Lease is renewed"
        return True, "leader" if state == LEADING else "standby"

    def leadership(self):
        return self.leader.state() if self.leader else LEADING

    # -- the loop ----------------------------------------------------------------------

    def run(self, stopping):
        ended = self.supervisor.end_leftovers()
        if ended:
            log.info("ended %d ssh children left by an earlier run", ended)
        self.watcher.start()
        for companion in self.companions:
            companion.start()
        if self.leader:
            self.leader.fit = self.fit_to_lead
            self.leader.start()
        try:
            while not stopping.is_set():
                self.heartbeat = time.monotonic()
                try:
                    self._step(stopping)
                except Exception as e:  # noqa: BLE001 -- a bug must not end every public name
                    self._surprise(e)
                    stopping.wait(1.0)
        finally:
            log.info("stopping: ending %d ssh sessions; nothing remote is deleted", len(self.supervisor.sessions))
            self.watcher.stop()
            self.supervisor.stop_all()
            for companion in self.companions:
                companion.stop()            # the replica's Lease goes: the leader may remove its tunnels at once
            if self.leader:
                self.leader.stop()
            if self.prober:
                self.prober.close()
            self.controller.remote.close()

    def _step(self, stopping):
        logged_in = self.session.ensure()
        self._tick()                        # children are supervised whatever else is wrong
        if not logged_in or not self.watcher.synced.is_set():
            stopping.wait(0.2)
            return
        state = self.leadership()
        metrics.LEADER.set(1 if state == LEADING else 0)
        if state == LEADING and not self._acting and not self._take_lead():
            stopping.wait(1.0)
            return
        if state != LEADING and self._acting:
            self.controller.stand_down()    # it keeps serving as a follower; its next lead looks afresh
            self._acting = False
        # Leader or not, every replica serves every exposed Service (its own tunnels): the controller asks
        # the fence, per Service, whether it may also create, delete and write.
        self.controller.user_name = self.session.user_name
        self._collect()                     # calls that ended since: their Services go again at once
        key = self.queue.get(timeout=self._turn())
        if key is not None and self.controller.remote.busy(key):
            key = None                      # a call of its own still runs: queued again when it ends
        if key is not None:
            try:
                self.controller.reconcile(key)
            except mysocket.BadCredentials as e:
                self.session.lost(e)
                self.queue.add(key, 1.0)
        if state == LEADING:
            self._sweep_if_due()

    def _surprise(self, error):
        """An error no module expected: its traceback once per kind, then one line each time."""
        signature = f"{error.__class__.__name__}: {error}"[:200]
        if signature != self._last_surprise:
            self._last_surprise = signature
            log.exception("unexpected error in the loop: %s; carrying on", signature)
        else:
            log.error("unexpected error in the loop again: %s", signature)
        metrics.RECONCILE_ERRORS.labels("unexpected").inc()

    def _take_lead(self):
        try:
            if not self.controller.take_lead():
                return False                # the socket list is still on its way
        except Fenced:
            return False
        except (mysocket.ApiError, *kube.ERRORS) as e:
            problem = str(e) if isinstance(e, mysocket.ApiError) else kube.describe_error(e)
            if problem != self._lead_problem:       # once, not every second
                log.warning("cannot take the lead yet (%s); trying again every second until it can", problem)
            self._lead_problem = problem
            if isinstance(e, mysocket.BadCredentials):
                self.session.lost(e)
            return False
        self._lead_problem = None
        self._acting = True
        self._next_sweep = time.monotonic()     # the first sweep now, whatever waits in the queue
        return True

    def _sweep_if_due(self):
        now = time.monotonic()
        if self._next_sweep is None or now < self._next_sweep or not self.watcher.watching:
            return                          # a cache that is not being watched may be stale: no sweep
        try:
            self.controller.resync()
            self._last_sweep, self._next_sweep = now, now + self.config.resync_seconds
        except Fenced:
            pass
        except Pending:
            # Due again when its call ends (_collect), not on every turn meanwhile: each try walks every
            # Service and waits out a budget, which a burst of 1,000 Services cannot spare. The spare
            # deadline only guards against an end that is never reported.
            self._next_sweep = now + SWEEP_SPACING
        except mysocket.BadCredentials as e:
            self.session.lost(e)
        except mysocket.ApiError as e:
            log.warning("resync failed (%s); trying again in 30s", e)
            self._next_sweep = now + 30
        except Exception as e:  # noqa: BLE001 -- contained: the sweep tries again later, the rest goes on
            self._surprise(e)
            self._next_sweep = now + 30

    def _turn(self):
        """A quarter second when idle; 20 ms while the supervisor waits for an answer from ssh."""
        return 0.02 if self.supervisor.busy() else 0.25

    def _tick(self):
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + self._turn()
        for stage in (self._supervise, self._probe, self._log_new_host_keys):
            try:
                stage()
            except Exception as e:  # noqa: BLE001 -- one stage's surprise must not stop the others
                self._surprise(e)

    def _sweep_soon(self):
        """A tunnel came up or went down: the leader looks at the edge again within seconds, not at the
        next periodic sweep (minutes away), so `mysocket.io/served-by` says what serves the name now.
        Spaced: a flapping tunnel or a burst of Services never sweeps more often than every SWEEP_SPACING."""
        if self._acting and self._next_sweep is not None:
            now = time.monotonic()
            self._next_sweep = min(self._next_sweep, max(now + SWEEP_SOON, self._last_sweep + SWEEP_SPACING))

    def _collect(self):
        for key in self.controller.remote.collect():
            if key == SWEEP:
                self._next_sweep = time.monotonic()
            elif key != TAKE_LEAD:          # taking the lead is tried again every second anyway
                self.queue.add(key)

    def _supervise(self):
        self._collect()
        transitions = self.supervisor.poll()
        for transition in transitions:
            self.controller.on_transition(transition)
            if transition.kind in ("up", "down"):
                self._sweep_soon()
        self.controller.follow_nodes()
        now = time.monotonic()
        if transitions or now >= self._next_count:      # a count of every forward: not 4 times a second
            self._next_count = now + 1.0
            metrics.TUNNELS_UP.set(self.supervisor.tunnels_up())

    def _probe(self):
        if not self.prober:
            return
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
