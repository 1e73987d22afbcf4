"""Start and stop the control plane's child processes without leaking any.

Each child runs in its own session (so its own process group): a stop signals
the whole group, which also catches anything the child forked, and a Ctrl-C on
the terminal reaches only the parent, which then stops the children in order.
Stopping is SIGTERM, a deadline, SIGKILL, then a reap with Popen.wait() (never
trust psutil.is_running(): it is true for zombies). A child that is already
reaped is never signalled again, so a recycled pid or group id is never hit.
Output goes to a log file in the control plane's work dir; the tail of it ends
up in the error when a child dies during start-up.

Every started child is remembered in a module-level registry that an atexit
hook drains, so even a test session that dies on an exception leaves nothing
behind. (A SIGKILLed Python runs no atexit hook; `make test` therefore also
runs the suite in its own PID namespace, see the Makefile.)
"""

import atexit
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Optional, Sequence

import psutil

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
_live: "set[Child]" = set()
_live_lock = threading.Lock()


class Child:
    """One long-running child process with a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, preexec_fn=None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.preexec_fn = preexec_fn        # e.g. join a node's cgroup (devcluster.cgroups.join)
        self._popen: Optional[subprocess.Popen] = None
        self._stopped = False

    @property
    def pid(self) -> Optional[int]:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        with open(self.log_path, "ab") as logfile:
            self._popen = self._spawn(logfile)
        self._stopped = False
        with _live_lock:
            _live.add(self)
        log.info("started %s (pid %d), log %s", self.name, self._popen.pid, self.log_path)

    def _spawn(self, logfile) -> subprocess.Popen:
        """Popen the child in its own session; subclasses may wire stdio differently."""
        return subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=logfile,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            preexec_fn=self.preexec_fn,
        )

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exit_code(self) -> Optional[int]:
        return None if self._popen is None else self._popen.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, wait up to `timeout`, then SIGKILL; always reap."""
        popen = self._popen
        if popen is None or self._stopped:
            return
        try:
            if popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it",
                                self.name, popen.pid, timeout)
                    self._signal_group(signal.SIGKILL)
                    popen.wait()
            # The leader is gone; take down anything it left in its group.
            self._signal_group(signal.SIGKILL, leader_reaped=True)
            log.info("stopped %s (pid %d, exit code %s)", self.name, popen.pid, popen.returncode)
        finally:
            self._stopped = True
            if popen.stdout is not None:
                popen.stdout.close()
            with _live_lock:
                _live.discard(self)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: int, leader_reaped: bool = False) -> None:
        # Until the leader is reaped its pid cannot be reused, so the group id is
        # ours. After the reap the group may still hold the leader's children;
        # the kernel does not hand out a pid that is still some group's id, so
        # the signal reaches those children or nobody (ESRCH).
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            if not leader_reaped:
                raise


def stop_all(children: Sequence[Child]) -> None:
    """Stop children in reverse start order; used by finalizers and atexit."""
    for child in reversed(list(children)):
        try:
            child.stop()
        except Exception:  # noqa: BLE001 - keep stopping the others
            log.exception("could not stop %s", child.name)


def _stop_everything_at_exit() -> None:
    with _live_lock:
        leftovers = list(_live)
    stop_all(leftovers)


atexit.register(_stop_everything_at_exit)


def find_processes(names: Sequence[str], marker: str) -> list:
    """Live (non-zombie) processes called one of `names` whose command line
    contains `marker` (e.g. a control plane's work dir): what a test checks to
    prove nothing was left behind."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if (info["name"] in names and info["status"] != psutil.STATUS_ZOMBIE
                and marker in " ".join(info["cmdline"] or [])):
            found.append(proc)
    return found
