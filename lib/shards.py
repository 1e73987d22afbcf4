"""Where a forward lives: the records of sessions and forwards, and the sharding rule.

A replica's forwards are grouped by (endpoint, shard) (lib/tunnels.py says
why): a forward joins the lowest-numbered session of its endpoint that holds
fewer than `size` forwards, and stays there until it is removed, so one ssh
death costs at most `size` forwards and a change never moves a neighbour. A
hash of the key would need no state, but gives shards of uneven size (no
bound on the blast radius) and moves forwards whenever the number of shards
changes. The endpoint is `sshargs.endpoint_of(spec)`: a Service's tunnels on
two edge nodes are never in one session.

Pure records and one rule: the supervisor (lib/tunnels.py) drives the
processes; this module only says where each forward goes and where each
session's control socket lives.
"""

import dataclasses
import hashlib
import os
import shutil
import tempfile

from lib import sshargs

_PRIVATE_PREFIX = "mysocketd-ctl-"
_SUN_PATH = 108  # bytes in sockaddr_un.sun_path, the NUL included
_SSH_SUFFIX = 17  # ssh binds "<ControlPath>.<16 random letters>" first, then renames it
_LONGEST_NAME = len("0123abcd-999")  # place(): 8 hex digits of the endpoint, "-", the shard


@dataclasses.dataclass
class Forward:
    spec: sshargs.TunnelSpec
    session: tuple               # (Endpoint, shard)
    asked: bool = False          # in its session's Ask on its way
    up_at: float = None
    failures: int = 0
    next_start: float = 0.0

    @property
    def up(self):
        return self.up_at is not None


@dataclasses.dataclass
class Ask:
    """One `ssh -O forward` client with every forward of its session that was ready to ask when it
    started: one process a batch, not one a forward. One Ask a session at a time: a forward that
    becomes ready meanwhile goes in the next, so a burst fills batches by itself while a lone new
    Service is asked for at once."""

    proc: object
    argv: list
    keys: list                   # the forwards it carries, in its -R order
    asked_at: float
    withdrawn: list = dataclasses.field(default_factory=list)    # specs taken away meanwhile: cancelled after


@dataclasses.dataclass
class Session:
    endpoint: sshargs.Endpoint
    shard: int
    control_path: str
    log_path: str
    keys: set = dataclasses.field(default_factory=set)
    argv: list = None
    proc: object = None          # the foreground `ssh -f -M` while starting
    background: int = None       # pid of the master while up
    up_at: float = None
    failures: int = 0
    next_start: float = 0.0
    cancelling: dict = dataclasses.field(default_factory=dict)   # local_port -> (proc, argv) of `-O cancel`
    asking: Ask = None           # the `-O forward` client on its way, if any
    next_ask: float = 0.0        # when a forward of it may be ready to ask (0: now); see Supervisor._ask

    @property
    def asks_log(self):
        """Where the session's `-O forward` clients write (each truncates it: one Ask at a time)."""
        return self.log_path[:-len(".log")] + ".forwards.log"

    @property
    def up(self):
        return self.background is not None

    @property
    def label(self):
        return f"{self.endpoint.label}#{self.shard}"

    def pids(self):
        return [pid for pid in (self.proc.pid if self.proc else None, self.background,
                                self.asking.proc.pid if self.asking else None) if pid is not None]


def place(sessions, key, endpoint, *, size, control_dir, log_dir):
    """The sharding rule: key joins the lowest shard of `endpoint` in `sessions` with room, or a new one
    (added to `sessions`, not started); returns that Session."""
    shards = sorted(shard for (e, shard) in sessions if e == endpoint)
    for shard in shards:
        session = sessions[(endpoint, shard)]
        if len(session.keys) < size:
            session.keys.add(key)
            return session
    shard = next(i for i in range(len(shards) + 1) if i not in shards)
    name = f"{hashlib.sha256(repr(endpoint).encode()).hexdigest()[:8]}-{shard}"
    session = Session(endpoint=endpoint, shard=shard, control_path=os.path.join(control_dir, name),
                      log_path=os.path.join(log_dir, f"session-{name}.log"), keys={key})
    sessions[(endpoint, shard)] = session
    return session


def control_dir(log_dir):
    """Where the sessions' control sockets live: a socket path must fit in 108 bytes (sun_path), and
    ssh first binds it with a 17-character suffix ("." and 16 random letters) before renaming it, so a
    deep state directory (a test's) gets a private one under the temporary directory instead."""
    wanted = os.path.join(os.path.dirname(os.path.abspath(log_dir)), "ssh-ctl")
    if len(wanted) + len(os.sep) + _LONGEST_NAME + _SSH_SUFFIX + 1 > _SUN_PATH:
        return tempfile.mkdtemp(prefix=_PRIVATE_PREFIX)
    os.makedirs(wanted, mode=0o700, exist_ok=True)
    return wanted


def remove_private(path):
    """A private control directory (made by control_dir) goes with the last session; a shared one stays.
    Told apart by name: where no private one was needed there may be no temporary directory at all
    (a pod's read-only root filesystem), and tempfile.gettempdir() raises there."""
    if os.path.basename(path.rstrip(os.sep)).startswith(_PRIVATE_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
