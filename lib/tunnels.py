"""Supervisor of this replica's remote forwards, held in shared ssh sessions.

Why shared sessions: one `ssh` per forward cost 1.4 MB PSS and an SSH session
at the edge each (138 MB per 100 forwards); the same forwards in a few
sessions cost ~3 MB (bench/multiplex.py). Why not one session for all: one
death would cost every name at once. So a replica's forwards are grouped by
(endpoint, shard):

- the endpoint is where a forward's tunnel must be connected
  (`sshargs.endpoint_of`: the node its `tunnel_server` names), so a
  Service's tunnels on two nodes are never in one session;
- the shard (lib/shards.py has the rule and why): at most `shard_size` (20)
  forwards a session, filled lowest first, and a forward never moves. One ssh
  death costs at most 20 of this replica's forwards, for the ~0.3 s a restart
  takes, while the other replica's tunnels (and a pool's other clusters)
  serve those names. Adding or removing a forward touches only its own
  session.

Each session is an OpenSSH ControlMaster that carries no forward of its own;
each forward is added with `ssh -O forward` and taken away with `ssh -O
cancel` (lib/sshargs.py). Shaped after Supervisor's process.py, with the OS
behind seams (lib/processes.py), so it is table-tested without processes:

- a session starts with the foreground `ssh -f -M`, which exits 0 once the
  edge accepted the key and leaves the background master holding the
  connection. When that master ends after `stable_after` seconds up, the
  connection dropped: it restarts at once and its forwards go "down"; sooner,
  or never up, and it backs off (0.5 s, 1 s, 2 s ... capped and jittered).
- a forward is "up" only when its `ssh -O forward` says the edge said yes: the
  master answers it only after the edge answered. One `-O forward` client
  asks for every forward of its session that is ready (shards.Ask; at 1,000
  Services, one process per forward was 2,000 spawns a replica pair), and
  names each refusal with its port; a refusal fails that forward alone, with
  its own backoff; its session and neighbours go on. A stopped (hung) master
  is killed and restarted.

It never blocks for long and never raises on a child's behalf: the controller
calls `poll()` from its loop and turns the returned transitions into Events
and log lines; the restart counter is kept here, where restarts happen.
"""

import dataclasses
import logging
import math
import os
import random
import signal
import time

from lib import metrics, processes, shards, sshargs

log = logging.getLogger(__name__)
STRAY_CHECK_EVERY = 10.0   # seconds between looks for ssh processes nobody tracks (processes.end_strays)


@dataclasses.dataclass
class Transition:
    key: tuple
    kind: str          # "up", "down" (was up long enough, died), "failed" (never up, or died soon after)
    detail: str = ""
    retry_in: float = 0.0
    failures: int = 0            # consecutive failures so far (for "failed")


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
                 stable_after=3.0, backoff_cap=60.0, stop_timeout=3.0, hang_check_every=1.0, shard_size=20):
        self.settings = settings
        self.log_dir = log_dir
        self.os = seams
        self.clock = clock
        self.jitter = jitter
        self.stable_after = stable_after
        self.backoff_cap = backoff_cap
        self.stop_timeout = stop_timeout
        self.hang_check_every = hang_check_every
        self.shard_size = shard_size
        self._next_hang_check = 0.0
        self._next_stray_check = 0.0
        self._next_full_ask = 0.0
        self._pending = []              # transitions found outside poll(), returned by the next poll()
        self.forwards = {}              # key -> shards.Forward
        self.sessions = {}              # (Endpoint, shard) -> shards.Session
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
        self.control_dir = shards.control_dir(log_dir)

    # -- what the controller asks for ------------------------------------

    def ensure(self, key, spec):
        """Forward exactly this spec for key; a changed spec replaces the forward in its session.

        Asked for at once (or its new session started at once), not on the next poll: the public name
        works that much sooner."""
        forward = self.forwards.get(key)
        if forward and forward.spec == spec:
            return
        if forward:
            log.info("replacing the forward: it changed", extra=_fields(key))
            self.remove(key)
        session = shards.place(self.sessions, key, sshargs.endpoint_of(spec, self.settings),
                               size=self.shard_size, control_dir=self.control_dir, log_dir=self.log_dir)
        self.forwards[key] = shards.Forward(spec=spec, session=(session.endpoint, session.shard))
        session.next_ask = 0.0              # with the session's Ask on its way: in the next one
        if session.up:
            self._ask(session, self.clock())
        elif session.proc is None and session.background is None and session.argv is None:
            self._start(session)

    def busy(self):
        """True while an answer is on its way (a session starting, a forward asked or cancelled): the
        loop then polls often, so nothing waits for the next quarter second."""
        return any(s.proc is not None or s.cancelling or s.asking for s in self.sessions.values())

    def remove(self, key):
        """Take one forward away; the other forwards of its session never notice."""
        forward = self.forwards.pop(key, None)
        if forward is None:
            return
        session = self.sessions[forward.session]
        session.keys.discard(key)
        if not session.keys:
            self._stop_sessions([session], [forward])     # the last one: the session goes, and the forward with it
            del self.sessions[forward.session]
            return
        self._withdraw(key, forward, session)

    def restart(self, key):
        """Ask the edge for a forward again that is up but useless (the traffic probe said so)."""
        forward = self.forwards.get(key)
        if forward:
            session = self.sessions[forward.session]
            self._withdraw(key, forward, session)
            forward.up_at, forward.next_start = None, self.clock()
            session.next_ask = 0.0
            metrics.SSH_RESTARTS.inc()

    def stop_all(self):
        self._stop_sessions(list(self.sessions.values()), list(self.forwards.values()))
        self.sessions.clear()
        self.forwards.clear()
        shards.remove_private(self.control_dir)

    def is_up(self, key):
        forward = self.forwards.get(key)
        return bool(forward and forward.up and self.sessions[forward.session].up)

    def tunnels_up(self):
        up = {where for where, session in self.sessions.items() if session.up}
        return sum(1 for f in self.forwards.values() if f.up_at is not None and f.session in up)

    def session_of(self, key):
        """The label of the session that holds key's forward (`host:port#shard`), for logs and tests."""
        forward = self.forwards.get(key)
        return self.sessions[forward.session].label if forward else None

    def pids(self):
        pids = {pid for s in self.sessions.values() for pid in s.pids()}
        return pids | {p.pid for s in self.sessions.values() for p, _ in s.cancelling.values()}

    # -- the loop ----------------------------------------------------------

    def poll(self):
        """Reap, promote, restart, ask; returns the transitions since the last poll."""
        now = self.clock()
        transitions, self._pending = self._pending, []
        # Reading /proc for every master is one cost that grows with the number of sessions; a hang
        # is rare and can wait a second, a death (a waitpid) cannot.
        check_hangs = now >= self._next_hang_check
        if check_hangs:
            self._next_hang_check = now + self.hang_check_every
        for session in self.sessions.values():
            if check_hangs:
                self._kill_if_hung(session)
            if session.proc is not None and session.proc.poll() is not None:
                transitions += self._started_or_failed(session, now)
            elif session.background is not None:
                code = self.os.exit_code(session.background)
                if code is not None:
                    transitions += self._ended(session, now, code)
                elif session.failures and now - session.up_at >= self.stable_after:
                    session.failures = 0
            ask = session.asking
            if ask is not None:
                if ask.proc.poll() is not None:
                    transitions += self._answered(session, now)
                elif now - ask.asked_at > self.settings.connect_timeout:
                    self.os.send(ask.proc.pid, signal.SIGKILL)     # no answer from the edge: a failure
            for port, (proc, _) in list(session.cancelling.items()):
                if proc.poll() is not None:
                    del session.cancelling[port]
                    session.next_ask = 0.0      # a new ask for that port waited for the cancel
            if session.proc is None and session.background is None and now >= session.next_start:
                if session.argv is not None:
                    metrics.SSH_RESTARTS.inc()
                self._start(session)
        for forward in self.forwards.values():
            if forward.failures and forward.up and now - forward.up_at >= self.stable_after:
                forward.failures = 0
        everything = now >= self._next_full_ask     # besides when each session says: a safety net
        if everything:
            self._next_full_ask = now + 1.0
        for session in self.sessions.values():
            if session.up and session.asking is None and (everything or now >= session.next_ask):
                self._ask(session, now)
        if now >= self._next_stray_check:     # rare, and a look at every process of the host: every 10 s
            self._next_stray_check = now + STRAY_CHECK_EVERY
            self.os.end_strays(self._argvs())
        return transitions

    def _kill_if_hung(self, session):
        for pid in session.pids():
            if self.os.stopped(pid):
                log.warning("ssh session is stopped (hung); killing it", extra={"session": session.label, "pid": pid})
                self.os.send(pid, signal.SIGKILL)

    def _started_or_failed(self, session, now):
        code, session.proc = session.proc.returncode, None
        if code == 0:
            session.background = self.os.find_background(session.argv, self.pids())
            if session.background is not None:
                session.up_at, session.next_ask = now, 0.0
                log.debug("ssh session up", extra={"session": session.label, "forwards": len(session.keys)})
                return []                   # its forwards are asked for below, on this same poll
        return self._session_failed(session, now, sshargs.explain_exit(code, _tail(session.log_path)))

    def _ended(self, session, now, code):
        session.background = None
        session.cancelling.clear()          # they went with their master
        detail = sshargs.explain_exit(code, _tail(session.log_path))
        lasted = now - session.up_at
        if lasted < self.stable_after:
            return self._session_failed(session, now, f"{detail}; it had been up only {lasted:.1f}s")
        session.failures = 0
        session.next_start = now
        was_up = [key for key in sorted(session.keys) if self.forwards[key].up]
        self._drop_forwards(session)
        log.warning("ssh session %s ended after %.0fs: %s; restarting it with its %d forwards", session.label,
                    lasted, detail, len(session.keys), extra={"session": session.label})
        return [Transition(key, "down", f"{detail} (ssh session {session.label})") for key in was_up]

    def _session_failed(self, session, now, detail):
        session.failures += 1
        delay = self._backoff(session.failures)
        session.next_start = now + delay
        self._drop_forwards(session)
        return [Transition(key, "failed", f"{detail} (ssh session {session.label})", delay, session.failures)
                for key in sorted(session.keys)]

    def _drop_forwards(self, session):
        """The session is gone: none of its forwards is up, and each is asked for again once it is back."""
        if session.asking is not None:
            self.os.stop([session.asking.proc.pid], self.stop_timeout)
            session.asking = None
        for key in session.keys:
            forward = self.forwards[key]
            forward.asked, forward.up_at, forward.next_start = False, None, 0.0

    def _answered(self, session, now):
        """The session's Ask ended: each forward it carried is up, or refused (named by its port), or, when
        ssh could not say which (killed, or an exit without naming one), failed."""
        ask, session.asking = session.asking, None
        session.next_ask = 0.0              # what became ready meanwhile goes in the next Ask, at once
        code = ask.proc.returncode
        for spec in ask.withdrawn:          # taken away meanwhile: the master may hold them now
            self._cancel(spec, session)
        if not session.up:
            return []                       # the session ended meanwhile: its own transition says so
        said = _tail(session.asks_log, 8192) if code != 0 else ""
        refused = sshargs.refused_ports(said) if code > 0 else set()
        transitions = []
        for key in ask.keys:
            forward = self.forwards[key]
            forward.asked = False
            spec = forward.spec
            if code == 0 or (refused and spec.local_port not in refused):
                forward.up_at = now
                transitions.append(Transition(key, "up", f"the edge accepted the forward of port "
                                              f"{spec.local_port} to {spec.target_host}:{spec.target_port} "
                                              f"(ssh session {session.label})"))
                continue
            detail = sshargs.explain_exit(code, sshargs.said_about(said, spec.local_port))
            if code < 0:
                detail = f"the edge did not answer the forward within {self.settings.connect_timeout}s"
            forward.failures += 1
            delay = self._backoff(forward.failures)
            forward.next_start = now + delay
            self._cancel(spec, session)     # the master may keep a refused forward listed: the retry asks anew
            transitions.append(Transition(key, "failed", detail, delay, forward.failures))
        return transitions

    def _ask(self, session, now):
        """One `-O forward` client for every forward of the session that is ready (none on its way, out of
        backoff, its port not being cancelled), unless one is on its way already: those wait for the next."""
        if session.asking is not None:
            return
        keys, session.next_ask = [], math.inf
        for key in session.keys:
            forward = self.forwards[key]
            if forward.up_at is not None or forward.asked:
                continue
            if now < forward.next_start:        # in backoff: the session is looked at again then
                session.next_ask = min(session.next_ask, forward.next_start)
            elif forward.spec.local_port not in session.cancelling:
                keys.append(key)
        if not keys:
            return                      # the usual case at rest: nothing sorted, nothing started
        keys.sort()
        argv = sshargs.forward_argv([self.forwards[k].spec for k in keys], session.endpoint, self.settings,
                                    session.control_path)
        try:
            proc = self.os.spawn(argv, session.asks_log)
        except OSError as e:            # a pids limit, a full disk: retried with backoff
            for key in keys:
                forward = self.forwards[key]
                forward.failures += 1
                delay = self._backoff(forward.failures)
                forward.next_start = now + delay
                session.next_ask = min(session.next_ask, forward.next_start)
                self._pending.append(Transition(key, "failed", f"cannot start ssh: {e}", delay, forward.failures))
            return
        session.asking = shards.Ask(proc=proc, argv=argv, keys=keys, asked_at=now)
        for key in keys:
            self.forwards[key].asked = True

    def _withdraw(self, key, forward, session):
        """Take the forward out of its running session (`-O cancel`); a new ask for that port waits for it.
        One on its way in an Ask is left to it (its neighbours there must not fail) and cancelled after."""
        if forward.asked:
            session.asking.keys.remove(key)
            session.asking.withdrawn.append(forward.spec)
            forward.asked = False
        elif forward.up:
            self._cancel(forward.spec, session)
        forward.up_at = None

    def _cancel(self, spec, session):
        if not session.up:
            return
        argv = sshargs.forward_argv(spec, session.endpoint, self.settings, session.control_path, cancel=True)
        try:
            session.cancelling[spec.local_port] = (self.os.spawn(argv, os.devnull), argv)
        except OSError as e:
            log.warning("cannot cancel a forward (%s); its session keeps it until it restarts", e,
                        extra={"session": session.label})

    def _backoff(self, failures):
        return min(self.backoff_cap, 0.5 * 2.0 ** (failures - 1)) * self.jitter(0.8, 1.2)

    # -- sessions ------------------------------------------------------------

    def _start(self, session):
        session.argv = sshargs.master_argv(session.endpoint, self.settings, session.control_path, session.log_path)
        _unlink(session.control_path)       # a master's socket left by a killed one would disable multiplexing
        try:
            session.proc = self.os.spawn(session.argv, session.log_path)
        except OSError as e:
            session.proc = None
            self._pending += self._session_failed(session, self.clock(), f"cannot start ssh: {e}")
            return
        log.debug("started ssh session", extra={"session": session.label, "pid": session.proc.pid})

    def _stop_sessions(self, sessions, forwards):
        pids = [pid for s in sessions for pid in s.pids()]
        pids += [p.pid for s in sessions for p, _ in s.cancelling.values()]
        starting = [s.argv for s in sessions if s.proc is not None]
        for s in sessions:
            s.proc, s.background, s.asking = None, None, None
            s.cancelling.clear()
        for f in forwards:
            f.asked, f.up_at = False, None
        if pids:
            self.os.stop(pids, self.stop_timeout)
        # A foreground ssh stopped while starting may have forked its master just before: now that the
        # foreground has ended, that one is our child; end it too, or it holds a session at the edge.
        late = [pid for pid in (self.os.find_background(argv, self.pids()) for argv in starting) if pid]
        if late:
            self.os.stop(late, self.stop_timeout)
        for s in sessions:
            _unlink(s.control_path)

    def _argvs(self):
        argvs = [s.argv for s in self.sessions.values()]
        argvs += [s.asking.argv for s in self.sessions.values() if s.asking is not None]
        return argvs + [argv for s in self.sessions.values() for _, argv in s.cancelling.values()]

    # -- an earlier run's children -----------------------------------------

    def end_leftovers(self):
        """End ssh processes an earlier run of this controller left (same key file), so none holds a port."""
        found = processes.leftovers(self.settings.identity_file, self.pids())
        if found:
            processes.stop(found, self.stop_timeout)
        return len(found)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


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
