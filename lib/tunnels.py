"""Supervisor of the `ssh -R` children, one per exposed Service.

Shaped after Supervisor/supervisor's process.py:
- a child counts as up only after it stayed alive `up_after` seconds: with
  ExitOnForwardFailure a refused forward exits within that time, so "up" means
  the edge accepted the forward;
- a child that dies before it was up backs off (0.5 s, 1 s, 2 s ... capped,
  jittered); a child that was up and then died is restarted at once, since
  that is a dropped connection, not a broken configuration;
- stop is SIGTERM, a deadline, then SIGKILL;
- children are reaped with Popen.poll() (psutil's is_running() is true for a
  zombie), and psutil is used only to see what Popen cannot: a stopped (hung)
  child, and children left behind by an earlier run of this controller.

It never blocks for long and never raises on a child's behalf: the controller
calls `poll()` from its loop and turns the returned transitions into Events
and log lines; the restart counter is kept here, where restarts happen.
Spawning goes through `spawn` and time through `clock` so the state machine
can be tested without processes.
"""

import dataclasses
import logging
import os
import random
import signal
import subprocess
import time

import psutil

from lib import metrics, sshargs

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Transition:
    key: tuple
    kind: str          # "up", "down" (was up, died), "failed" (died before it was up)
    detail: str = ""
    retry_in: float = 0.0
    failures: int = 0            # consecutive quick exits so far (for "failed")


@dataclasses.dataclass
class _Child:
    spec: sshargs.TunnelSpec
    log_path: str
    proc: object = None
    started_at: float = 0.0
    up: bool = False
    failures: int = 0            # consecutive exits before reaching "up"
    next_start: float = 0.0


def spawn_ssh(argv, log_path):
    with open(log_path, "wb") as stderr:
        # A session of its own: a Ctrl-C on the controller's terminal must not
        # reach the children before the controller decides to stop them.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)


class Supervisor:
    def __init__(self, settings, log_dir, *, spawn=spawn_ssh, clock=time.monotonic, jitter=random.uniform,
                 is_stopped=None, up_after=2.0, backoff_cap=60.0, stop_timeout=3.0, hang_check_every=1.0):
        self.settings = settings
        self.log_dir = log_dir
        self.spawn = spawn
        self.clock = clock
        self.jitter = jitter
        self.is_stopped = is_stopped or _stopped
        self.up_after = up_after
        self.backoff_cap = backoff_cap
        self.stop_timeout = stop_timeout
        self.hang_check_every = hang_check_every
        self._next_hang_check = 0.0
        self.children = {}
        os.makedirs(log_dir, mode=0o700, exist_ok=True)

    # -- what the controller asks for ------------------------------------

    def ensure(self, key, spec):
        """Run exactly one child for key with this spec; a changed spec replaces the child."""
        child = self.children.get(key)
        if child and child.spec == spec:
            return
        if child:
            log.info("replacing ssh child: the forward changed", extra=_fields(key, pid=_pid(child)))
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

    # -- the loop ----------------------------------------------------------

    def poll(self):
        """Reap, promote, restart; returns the transitions since the last poll."""
        now = self.clock()
        transitions = []
        # Reading /proc for every child is the one cost that grows with the number of tunnels; a hang
        # is rare and can wait a second, a death (Popen.poll, a waitpid) cannot.
        check_hangs = now >= self._next_hang_check
        if check_hangs:
            self._next_hang_check = now + self.hang_check_every
        for key, child in self.children.items():
            if check_hangs and child.proc is not None and self.is_stopped(child.proc):
                log.warning("ssh child is stopped (hung); killing it", extra=_fields(key, pid=child.proc.pid))
                child.proc.kill()
                child.proc.wait()
            if child.proc is not None and child.proc.poll() is not None:
                transitions.append(self._ended(key, child, now))
            elif child.proc is not None and not child.up and now - child.started_at >= self.up_after:
                child.up = True
                child.failures = 0
                transitions.append(Transition(key, "up", f"forwarding edge port {child.spec.local_port} "
                                                         f"to {child.spec.target_host}:{child.spec.target_port}"))
            if child.proc is None and now >= child.next_start:
                metrics.SSH_RESTARTS.inc()
                self._start(key, child)
        return transitions

    def _ended(self, key, child, now):
        detail = sshargs.explain_exit(child.proc.returncode, _tail(child.log_path))
        was_up = child.up
        child.proc = None
        child.up = False
        if was_up:
            child.next_start = now
            return Transition(key, "down", detail, 0.0)
        child.failures += 1
        delay = min(self.backoff_cap, 0.5 * 2.0 ** (child.failures - 1)) * self.jitter(0.8, 1.2)
        child.next_start = now + delay
        return Transition(key, "failed", detail, delay, child.failures)

    def _start(self, key, child):
        argv = sshargs.ssh_argv(child.spec, self.settings)
        child.proc = self.spawn(argv, child.log_path)
        child.started_at = self.clock()
        child.up = False
        log.debug("started ssh child", extra=_fields(key, pid=child.proc.pid))

    def _stop(self, children):
        procs = [c.proc for c in children if c.proc is not None]
        for c in children:
            c.proc = None
            c.up = False
        stop_processes(procs, self.stop_timeout)

    # -- an earlier run's children -----------------------------------------

    def end_leftovers(self):
        """End ssh processes an earlier run of this controller left (same key file), so none holds a port."""
        marker = self.settings.identity_file
        mine = {c.proc.pid for c in self.children.values() if c.proc}
        found = []
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                cmd = p.info["cmdline"] or []
                if p.pid not in mine and p.info["name"] == "ssh" and marker in cmd and "-R" in cmd:
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        for p in found:
            _signal(p, signal.SIGTERM)
        _, alive = psutil.wait_procs(found, timeout=self.stop_timeout)
        for p in alive:
            _signal(p, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=self.stop_timeout)
        return len(found)


def stop_processes(procs, timeout):
    """SIGTERM all, wait for all together until the deadline, SIGKILL the rest, reap."""
    for proc in procs:
        if proc.poll() is None:
            _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()


def _signal(proc, sig):
    try:
        proc.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def _stopped(proc):
    try:
        if not hasattr(proc, "ps"):
            proc.ps = psutil.Process(proc.pid)     # one per child, not one per check
        return proc.ps.status() == psutil.STATUS_STOPPED
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _tail(path, size=2048):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _pid(child):
    return child.proc.pid if child.proc else None


def _fields(key, **extra):
    return {"namespace": key[0], "service": key[1], **extra}
