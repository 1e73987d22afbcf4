"""One cgroup subtree per node, in every mounted hierarchy, removed without a trace.

Why it is shaped this way:
- cgroups are not namespaced here: whatever kubelet and runc create under
  /sys/fs/cgroup is the host's. Each node therefore gets a root of its own,
  /mysocketd-devcluster/<node id>, in every hierarchy (the v1 controllers,
  name=systemd, and the v2 one runc also writes to in hybrid mode). It is the
  kubelet's cgroupRoot, so kubepods of two nodes (two test runs, or a test run
  and `make demo`) never meet, nor the host's.
- The node's own processes (the namespace holder, containerd, kubelet,
  kube-proxy, and through containerd every shim) live in <root>/node, so the
  whole node is this one subtree: stopping freezes it (nothing can fork
  away), kills every process in it by PID, thaws, waits, then removes the
  directories bottom-up.
- A test process that dies without its clean-up (SIGKILL, or pytest killed)
  leaves directories behind, though its processes die with `make test`'s PID
  namespace. The owner holds an flock on its root directory for as long as
  it lives, so a tree whose lock is free is nobody's: `make test` removes
  those of its own PID namespace (their names start with its inode) once
  pytest has exited (`python -m devcluster.cgroups`), and the next node to
  start removes any other that is older than a minute (past the instant
  between mkdir and flock). Process lists cannot tell: cgroup.procs only
  shows processes of the reader's PID namespace.
"""

import fcntl
import logging
import os
import signal
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

PARENT = "mysocketd-devcluster"
STALE_AGE = 60.0


class CgroupError(RuntimeError):
    """A cgroup could not be created or emptied."""


def hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 and v2) this process sees."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0]
            if fstype in ("cgroup", "cgroup2") and left.split()[3] == "/":
                found.append(Path(left.split()[4]))
    if not found:
        raise CgroupError("no cgroup hierarchy is mounted (/sys/fs/cgroup): a kubelet cannot run here")
    return sorted(set(found))


class NodeCgroup:
    """/mysocketd-devcluster/<name> in every hierarchy; create(), then destroy()."""

    def __init__(self, name: str):
        self.name = name
        self.root = f"/{PARENT}/{name}"          # the kubelet's cgroupRoot
        self._lock_fd = None

    @classmethod
    def for_node(cls, node_name: str) -> "NodeCgroup":
        return cls(_owner_prefix() + node_name)

    def dirs(self, sub: str = "") -> list[Path]:
        return [h / PARENT / self.name / sub if sub else h / PARENT / self.name for h in hierarchies()]

    def create(self) -> None:
        remove_stale()
        for h in hierarchies():
            for rel in (PARENT, f"{PARENT}/{self.name}", f"{PARENT}/{self.name}/node"):
                path = h / rel
                path.mkdir(exist_ok=True)
                if self._lock_fd is None and rel.endswith(self.name):
                    self._lock_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _init_cpuset(path)

    def node_procs_files(self) -> list[str]:
        """The cgroup.procs files a node process writes "0" into to join <root>/node."""
        return [str(d / "cgroup.procs") for d in self.dirs("node")]

    def pids(self) -> set[int]:
        found = set()
        for top in self.dirs():
            for path, _, _ in os.walk(top):
                try:
                    found.update(int(p) for p in Path(path, "cgroup.procs").read_text().split())
                except OSError:
                    pass
        return found

    def kill_all(self, timeout: float = 20.0, spare=()) -> int:
        """SIGKILL every process in the subtree but `spare`, frozen first; return how many there were."""
        killed = set()
        deadline = time.monotonic() + timeout
        while pids := self.pids() - {os.getpid(), *spare}:
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {sorted(pids)} of node {self.name} survived SIGKILL")
            self._freeze(True)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            self._freeze(False)
            time.sleep(0.05)
        return len(killed)

    def destroy(self) -> None:
        """Kill what is left, remove every directory of the subtree, release the lock."""
        try:
            self.kill_all()
        finally:
            _remove_tree(self.name)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _freeze(self, frozen: bool) -> None:
        """The v1 freezer where there is one, else cgroup v2's cgroup.freeze."""
        dirs = self.dirs()
        v1 = [d / "freezer.state" for d in dirs if (d / "freezer.state").exists()]
        for state in v1:
            state.write_text("FROZEN" if frozen else "THAWED")
        if not v1:
            for knob in (d / "cgroup.freeze" for d in dirs if (d / "cgroup.freeze").exists()):
                knob.write_text("1" if frozen else "0")


def join(procs_files) -> None:
    """Move the calling process into the cgroups named by `procs_files` (writes "0").

    Meant for Popen's preexec_fn, between fork and exec: only os calls, no locks."""
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def own_trees() -> list[str]:
    """The names of the trees this PID namespace owns (or owned) right now, in any hierarchy."""
    prefix = _owner_prefix()
    return sorted({p.name for h in hierarchies() if (h / PARENT).is_dir()
                   for p in (h / PARENT).iterdir() if p.name.startswith(prefix)})


def _owner_prefix() -> str:
    """Trees are named after the PID namespace of their owner, `make test`'s or the demo's."""
    return f"{os.stat('/proc/self/ns/pid').st_ino}-"


def remove_stale(min_age: float = STALE_AGE, own_only: bool = False) -> list[str]:
    """Remove the trees of nodes whose owner is gone (its lock is free) and that are older
    than min_age (or, with own_only, those of this PID namespace); return their names."""
    removed = []
    for h in hierarchies()[:1]:
        parent = h / PARENT
        if not parent.is_dir():
            continue
        for tree in parent.iterdir():
            if not tree.is_dir():
                continue
            if own_only and not tree.name.startswith(_owner_prefix()):
                continue
            if not own_only and time.time() - tree.stat().st_mtime < min_age:
                continue
            fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                      # alive
            finally:
                os.close(fd)
            log.warning("removing the cgroups of node %s, left behind by a killed run", tree.name)
            cgroup = NodeCgroup(tree.name)
            cgroup.kill_all()
            _remove_tree(tree.name)
            removed.append(tree.name)
    return removed


def _remove_tree(name: str) -> None:
    left = []
    for h in hierarchies():
        top = h / PARENT / name
        if not top.exists():
            continue
        for path, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"{path}: {e.strerror}")
        try:
            os.rmdir(h / PARENT)              # the last node out removes the parent too
        except OSError:
            pass
    if left:
        raise CgroupError("cgroups left behind: " + "; ".join(left[:5]))


def _init_cpuset(path: Path) -> None:
    """A new v1 cpuset cgroup has no CPUs or memory nodes: copy its parent's (as runc does).
    (In v2 an empty cpuset.cpus means the parent's; there is nothing to copy.)"""
    if (path / "cgroup.controllers").exists():
        return
    for knob in ("cpuset.cpus", "cpuset.mems"):
        mine = path / knob
        if mine.exists() and not mine.read_text().strip():
            mine.write_text((path.parent / knob).read_text())


def main() -> int:
    """`python -m devcluster.cgroups`: what `make test` runs after pytest, in its namespaces."""
    logging.basicConfig(level=logging.WARNING, format="devcluster.cgroups: %(message)s")
    try:
        remove_stale(own_only=True)
        remove_stale()
    except (OSError, CgroupError) as e:
        print(f"devcluster.cgroups: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
