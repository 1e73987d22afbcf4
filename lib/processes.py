"""The OS side of the ssh children: spawn, find, reap, signal. The supervisor's seams.

Why ssh runs with `-f`: with `ExitOnForwardFailure=yes`, `ssh -f` stays in the
foreground until the edge has accepted every remote forward, then forks the
process that holds the connection and exits 0 (ssh(1), -f). So the foreground
process's exit status is ssh's own report of the forward: 0 means the edge
said yes, 255 means it said no or never answered (ConnectTimeout). That is the
positive evidence "up" needs, with no log parsing and no guess by the clock.

The background ssh would then belong to init. `become_subreaper()` makes this
process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so
the background ssh is re-parented here: it can be waited for like any child,
its exit is seen at once, and it never lingers as someone else's zombie.
Only pids this module was told about are waited for; subprocess.Popen keeps
its own children.
"""

import ctypes
import logging
import os
import signal
import subprocess
import time

import psutil

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """True if orphaned descendants (the backgrounded ssh) are now re-parented to this process."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def spawn(argv, log_path):
    """Start the foreground ssh; its log (and the background one's, via -E) goes to log_path, truncated."""
    open(log_path, "wb").close()
    with open(log_path, "ab") as stderr:        # appending, as ssh's -E does: neither overwrites the other
        # A session of its own: a Ctrl-C on the controller's terminal must not
        # reach the children before the controller decides to stop them.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)


def find_background(argv, exclude):
    """The pid of the backgrounded ssh with exactly this argv, now our child; None if it is already gone."""
    try:
        for p in psutil.Process().children():
            try:
                if p.pid not in exclude and p.cmdline() == argv:
                    return p.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    except psutil.NoSuchProcess:
        pass
    return None


def exit_code(pid):
    """The exit code of an ended child we reap now, None while it runs; -1 if it ended elsewhere."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (no subreaper): all we can learn is whether it still runs.
        return None if _running(pid) else -1
    return os.waitstatus_to_exitcode(status) if done else None


def stopped(pid):
    """True for a process stopped by a signal (SIGSTOP: hung as far as the edge can tell)."""
    try:       # one read of /proc, not psutil's two: every session is looked at every second
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"T"
    except (OSError, IndexError):
        return False


def send(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(pids, timeout):
    """SIGTERM all, wait for all together until the deadline, SIGKILL the rest; reap what is ours."""
    for pid in pids:
        send(pid, signal.SIGCONT)           # a stopped process cannot act on SIGTERM
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if exit_code(pid) is None}
        if left:
            time.sleep(0.01)
    for pid in left:
        send(pid, signal.SIGKILL)
    for pid in left:
        _wait(pid, timeout)


def end_strays(tracked_argvs):
    """End and reap ssh children nobody tracks: a background ssh whose start was never seen through.

    Tracked children are recognised by argv (a background ssh has its foreground's argv), so one that
    was forked a moment ago and is not registered yet is never taken for a stray.
    """
    tracked = [list(a) for a in tracked_argvs if a]
    try:
        children = psutil.Process().children()
    except psutil.NoSuchProcess:
        return
    for p in children:
        try:
            if p.name() != "ssh" or p.cmdline() in tracked:
                continue
            if p.status() != psutil.STATUS_ZOMBIE:
                log.warning("ending an ssh process nobody tracks (it would hold a tunnel port)",
                            extra={"pid": p.pid})
                stop([p.pid], 3.0)
            else:
                exit_code(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def leftovers(marker, exclude):
    """ssh processes with `marker` (our key file) in their argv that an earlier run left behind."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
            if p.pid not in exclude and p.info["name"] == "ssh" and marker in cmd:
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _wait(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and exit_code(pid) is None:
        time.sleep(0.01)


def _running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
