"""Supervisor of the `ssh -R` children, one per exposed Service.

Shaped after Supervisor/supervisor's process.py, a state machine whose OS
side is behind seams (lib/processes.py), so it is table-tested without
processes:

- starting: the foreground `ssh -f` runs. It exits 0 once the edge accepted
  the forward (ssh's own report, see lib/processes.py) and leaves a
  background ssh holding the connection: that is "up", and nothing else is.
  A non-zero exit (refused forward, refused key, an edge that never answers
  until ConnectTimeout) is a failure.
- up: the background ssh runs. When it ends after staying up `stable_after`
  seconds, that was a dropped connection: restart at once. When it ends
  sooner, it backs off like a child that never came up, so a tunnel that
  flaps is not restarted in a hot loop.
- backing off: 0.5 s, 1 s, 2 s ... capped and jittered; reset once a child
  has stayed up `stable_after` seconds.
- a stopped (hung) process is killed; stop is SIGTERM, a deadline, SIGKILL.

It never blocks for long and never raises on a child's behalf: the controller
calls `poll()` from its loop and turns the returned transitions into Events
and log lines; the restart counter is kept here, where restarts happen.
"""

import dataclasses
import logging
import os
import random
import signal
import time

from lib import metrics, processes, sshargs

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Transition:
    key: tuple
    kind: str          # "up", "down" (was up long enough, died), "failed" (never up, or died soon after)
    detail: str = ""
    retry_in: float = 0.0
    failures: int = 0            # consecutive failures so far (for "failed")


@dataclasses.dataclass
class _Child:
    spec: sshargs.TunnelSpec
    log_path: str
    argv: list = None
    proc: object = None          # the foreground ssh (a Popen) while starting
    background: int = None       # pid of the background ssh while up
    started_at: float = 0.0
    up_at: float = None
    failures: int = 0            # consecutive failures (for the backoff)
    next_start: float = 0.0

    @property
    def up(self):
        return self.background is not None

    def pids(self):
        return [pid for pid in (self.proc.pid if self.proc else None, self.background) if pid is not None]


@dataclasses.dataclass(frozen=True)
class Seams:
    """The OS operations the state machine uses; tests pass fakes."""

    spawn: object = processes.spawn
    find_background: object = processes.find_background
    exit_code: object = processes.exit_code
    stopped: object = processes.stopped
    send: object = processes.send
    stop: object = processes.stop
    end_strays: object = processes.end_strays


class Supervisor:
    def __init__(self, settings, log_dir, *, seams=Seams(), clock=time.monotonic, jitter=random.uniform,
                 stable_after=3.0, backoff_cap=60.0, stop_timeout=3.0, hang_check_every=1.0):
        self.settings = settings
        self.log_dir = log_dir
        self.os = seams
        self.clock = clock
        self.jitter = jitter
        self.stable_after = stable_after
        self.backoff_cap = backoff_cap
        self.stop_timeout = stop_timeout
        self.hang_check_every = hang_check_every
        self._next_hang_check = 0.0
        self._pending = []              # transitions found outside poll(), returned by the next poll()
        self.children = {}
        os.makedirs(log_dir, mode=0o700, exist_ok=True)

    # -- what the controller asks for ------------------------------------

    def ensure(self, key, spec):
        """Run exactly one child for key with this spec; a changed spec replaces the child."""
        child = self.children.get(key)
        if child and child.spec == spec:
            return
        if child:
            log.info("replacing ssh child: the forward changed", extra=_fields(key))
            self._stop([child])
        path = os.path.join(self.log_dir, f"{key[0]}.{key[1]}.log")
        self.children[key] = child = _Child(spec=spec, log_path=path)
        self._start(key, child)

    def remove(self, key):
        child = self.children.pop(key, None)
        if child:
            self._stop([child])

    def restart(self, key):
        """Replace a child that is alive but useless (the traffic probe said so)."""
        child = self.children.get(key)
        if child:
            self._stop([child])
            metrics.SSH_RESTARTS.inc()
            self._start(key, child)

    def stop_all(self):
        children = list(self.children.values())
        self.children.clear()
        self._stop(children)

    def is_up(self, key):
        child = self.children.get(key)
        return bool(child and child.up)

    def tunnels_up(self):
        return sum(1 for c in self.children.values() if c.up)

    def pids(self):
        return {pid for c in self.children.values() for pid in c.pids()}

    # -- the loop ----------------------------------------------------------

    def poll(self):
        """Reap, promote, restart; returns the transitions since the last poll."""
        now = self.clock()
        transitions, self._pending = self._pending, []
        # Reading /proc for every child is the one cost that grows with the number of tunnels; a hang
        # is rare and can wait a second, a death (a waitpid) cannot.
        check_hangs = now >= self._next_hang_check
        if check_hangs:
            self._next_hang_check = now + self.hang_check_every
        for key, child in self.children.items():
            if check_hangs:
                self._kill_if_hung(key, child)
            if child.proc is not None and child.proc.poll() is not None:
                transitions.append(self._started_or_failed(key, child, now))
            elif child.background is not None:
                code = self.os.exit_code(child.background)
                if code is not None:
                    transitions.append(self._ended(key, child, now, code))
                elif child.failures and now - child.up_at >= self.stable_after:
                    child.failures = 0
            if child.proc is None and child.background is None and now >= child.next_start:
                metrics.SSH_RESTARTS.inc()
                self._start(key, child)
        if check_hangs:
            self.os.end_strays([c.argv for c in self.children.values()])
        return transitions

    def _kill_if_hung(self, key, child):
        for pid in child.pids():
            if self.os.stopped(pid):
                log.warning("ssh child is stopped (hung); killing it", extra=_fields(key, pid=pid))
                self.os.send(pid, signal.SIGKILL)

    def _started_or_failed(self, key, child, now):
        code, child.proc = child.proc.returncode, None
        if code == 0:
            child.background = self.os.find_background(child.argv, self.pids())
            if child.background is not None:
                child.up_at = now
                return Transition(key, "up", f"the edge accepted the forward of port {child.spec.local_port} "
                                             f"to {child.spec.target_host}:{child.spec.target_port}")
        return self._failed(key, child, now, sshargs.explain_exit(code, _tail(child.log_path)))

    def _ended(self, key, child, now, code):
        child.background = None
        detail = sshargs.explain_exit(code, _tail(child.log_path))
        lasted = now - child.up_at
        if lasted < self.stable_after:
            return self._failed(key, child, now, f"{detail}; it had been up only {lasted:.1f}s")
        child.failures = 0
        child.next_start = now
        return Transition(key, "down", detail, 0.0)

    def _failed(self, key, child, now, detail):
        child.failures += 1
        delay = min(self.backoff_cap, 0.5 * 2.0 ** (child.failures - 1)) * self.jitter(0.8, 1.2)
        child.next_start = now + delay
        return Transition(key, "failed", detail, delay, child.failures)

    def _start(self, key, child):
        child.argv = sshargs.ssh_argv(child.spec, self.settings, child.log_path)
        try:
            child.proc = self.os.spawn(child.argv, child.log_path)
        except OSError as e:            # a pids limit, a full disk: this child's problem, retried with backoff
            child.proc = None
            self._pending.append(self._failed(key, child, self.clock(), f"cannot start ssh: {e}"))
            return
        child.started_at = self.clock()
        log.debug("started ssh child", extra=_fields(key, pid=child.proc.pid))

    def _stop(self, children):
        pids = [pid for c in children for pid in c.pids()]
        starting = [c.argv for c in children if c.proc is not None]
        for c in children:
            c.proc, c.background = None, None
        if pids:
            self.os.stop(pids, self.stop_timeout)
        # A foreground ssh stopped while starting may have forked its background one just before:
        # now that the foreground has ended, that one is our child; end it too, or it holds the port.
        late = [pid for pid in (self.os.find_background(argv, self.pids()) for argv in starting) if pid]
        if late:
            self.os.stop(late, self.stop_timeout)

    # -- an earlier run's children -----------------------------------------

    def end_leftovers(self):
        """End ssh processes an earlier run of this controller left (same key file), so none holds a port."""
        found = processes.leftovers(self.settings.identity_file, self.pids())
        if found:
            processes.stop(found, self.stop_timeout)
        return len(found)


def _tail(path, size=2048):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _fields(key, **extra):
    return {"namespace": key[0], "service": key[1], **extra}
