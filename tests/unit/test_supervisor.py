"""The supervisor's state machine, driven through its seams: a fake clock and fake processes."""

import dataclasses

import pytest
from prometheus_client import REGISTRY

from lib import sshargs, tunnels

SETTINGS = sshargs.SshSettings(host="edge", port=2222, identity_file="/state/id", known_hosts_file="/state/kh",
                               strict_host_keys=False)
SPEC = sshargs.TunnelSpec(local_port=10001, target_host="10.96.0.10", target_port=8000, user_name="u1")
KEY = ("demo", "web")


class FakeProc:
    """The foreground `ssh -f`: exit(0) means the edge accepted the forward and a background ssh took over."""

    def __init__(self, world, argv):
        self.world, self.argv = world, argv
        self.pid = world.new_pid()
        self.returncode = None

    def poll(self):
        return self.returncode

    def accepted(self):
        """As ssh -f: fork the background process, then exit 0."""
        self.world.background[self.world.new_pid()] = {"argv": self.argv, "code": None}
        self.returncode = 0

    def refused(self, code=255):
        self.returncode = code


class World:
    """The OS as the supervisor sees it through its Seams: pids, exits, signals, hangs."""

    def __init__(self):
        self.now = 0.0
        self.pids = iter(range(1000, 100000))
        self.spawned = []           # FakeProc, in order
        self.background = {}        # pid -> {"argv", "code"}
        self.hung = set()
        self.signals = []           # (pid, sig)
        self.stopped_pids = []

    def new_pid(self):
        return next(self.pids)

    def last(self):
        return self.spawned[-1]

    def background_of(self, proc):
        return next(pid for pid, b in self.background.items() if b["argv"] is proc.argv)

    def seams(self):
        def spawn(argv, log_path):
            proc = FakeProc(self, argv)
            self.spawned.append(proc)
            return proc

        def find_background(argv, exclude):
            return next((pid for pid, b in self.background.items() if b["argv"] == argv and pid not in exclude
                         and b["code"] is None), None)

        def exit_code(pid):
            return self.background[pid]["code"]

        def send(pid, sig):
            self.signals.append((pid, sig))
            if pid in self.background:
                self.background[pid]["code"] = -sig
            for p in self.spawned:
                if p.pid == pid:
                    p.returncode = -sig

        def stop(pids, timeout):
            self.stopped_pids.extend(pids)
            for pid in pids:
                send(pid, 15)

        return tunnels.Seams(spawn=spawn, find_background=find_background, exit_code=exit_code,
                             stopped=lambda pid: pid in self.hung, send=send, stop=stop,
                             end_strays=lambda argvs: None)


@pytest.fixture
def world(tmp_path):
    w = World()
    w.sup = tunnels.Supervisor(SETTINGS, str(tmp_path), seams=w.seams(), clock=lambda: w.now,
                               jitter=lambda a, b: 1.0, stable_after=10.0, backoff_cap=8.0, stop_timeout=0.1,
                               hang_check_every=0.0)
    return w


def test_up_only_when_ssh_says_the_edge_accepted_the_forward(world):
    world.sup.ensure(KEY, SPEC)
    [proc] = world.spawned
    assert proc.argv == sshargs.ssh_argv(SPEC, SETTINGS, world.sup.children[KEY].log_path)
    world.now = 60.0                                # however long it takes: time alone is no evidence
    assert world.sup.poll() == [] and not world.sup.is_up(KEY)
    proc.accepted()
    [t] = world.sup.poll()
    assert (t.kind, t.key) == ("up", KEY) and world.sup.is_up(KEY) and world.sup.tunnels_up() == 1


def test_an_edge_that_never_answers_is_a_failure_not_a_flap(world):
    """ssh waits for ConnectTimeout, then exits 255: never up, and backed off."""
    world.sup.ensure(KEY, SPEC)
    world.now = 10.0
    world.last().refused(255)
    [t] = world.sup.poll()
    assert t.kind == "failed" and t.retry_in == 0.5 and not world.sup.is_up(KEY)


def test_ensure_same_spec_is_a_no_op(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.ensure(KEY, SPEC)
    assert len(world.spawned) == 1


def test_changed_spec_replaces_the_child(world):
    world.sup.ensure(KEY, SPEC)
    first = world.spawned[0]
    first.accepted()
    world.sup.poll()
    background = world.background_of(first)
    world.sup.ensure(KEY, sshargs.TunnelSpec(10001, "10.96.0.10", 9090, "u1"))
    assert background in world.stopped_pids and len(world.spawned) == 2
    assert "10001:10.96.0.10:9090" in world.spawned[1].argv


def test_quick_exits_back_off_exponentially_then_reset_once_stable(world):
    world.sup.ensure(KEY, SPEC)
    delays = []
    for _ in range(6):
        world.last().refused()
        [t] = world.sup.poll()
        assert t.kind == "failed"
        delays.append(t.retry_in)
        count = len(world.spawned)
        world.now += t.retry_in - 0.01
        world.sup.poll()
        assert len(world.spawned) == count          # not yet
        world.now += 0.01
        world.sup.poll()
        assert len(world.spawned) == count + 1      # restarted on time
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]   # capped
    world.last().accepted()
    assert [t.kind for t in world.sup.poll()] == ["up"]
    world.now += 10.5
    world.sup.poll()                                # stayed up: the backoff is reset
    world.background[world.background_of(world.last())]["code"] = 255
    [t] = world.sup.poll()
    assert t.kind == "down" and t.retry_in == 0.0
    assert len(world.spawned) == 8                  # a child that was up is restarted at once
    world.last().refused()
    assert world.sup.poll()[0].retry_in == 0.5      # and its backoff starts again from 0.5 s


def test_a_child_that_dies_soon_after_up_backs_off_like_one_never_up(world):
    world.sup.ensure(KEY, SPEC)
    delays = []
    for _ in range(3):
        world.last().accepted()
        assert [t.kind for t in world.sup.poll()] == ["up"]
        world.now += 1.0
        world.background[world.background_of(world.last())]["code"] = 255
        [t] = world.sup.poll()
        assert t.kind == "failed" and "up only 1.0s" in t.detail
        delays.append(t.retry_in)
        world.now += t.retry_in
        world.sup.poll()
    assert delays == [0.5, 1.0, 2.0]


def test_a_hung_child_is_killed_and_restarted(world):
    before = REGISTRY.get_sample_value("mysocketd_ssh_restarts_total")
    world.sup.ensure(KEY, SPEC)
    world.last().accepted()
    world.sup.poll()
    world.now = 30.0
    background = world.background_of(world.last())
    world.hung.add(background)
    [t] = world.sup.poll()
    assert t.kind == "down" and (background, 9) in world.signals
    assert len(world.spawned) == 2
    assert REGISTRY.get_sample_value("mysocketd_ssh_restarts_total") - before == 1


def test_a_child_that_cannot_be_started_is_a_failure_with_backoff(world):
    def no_pids(argv, log_path):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    world.sup.os = dataclasses.replace(world.sup.os, spawn=no_pids)
    world.sup.ensure(KEY, SPEC)
    [t] = world.sup.poll()
    assert t.kind == "failed" and "cannot start ssh" in t.detail and t.retry_in == 0.5


def test_a_child_stopped_while_starting_leaves_no_background_ssh(world):
    """The foreground may fork its background ssh just as it is told to stop: that one is ended too."""
    world.sup.ensure(KEY, SPEC)
    starting = world.last()
    starting.accepted()                             # forked, but the supervisor has not polled yet
    background = world.background_of(starting)
    world.sup.ensure(KEY, sshargs.TunnelSpec(10001, "10.96.0.10", 9090, "u1"))
    assert starting.pid in world.stopped_pids and background in world.stopped_pids


def test_remove_and_stop_all_signal_every_child(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.ensure(("demo", "api"), sshargs.TunnelSpec(10002, "10.96.0.11", 80, "u1"))
    world.spawned[0].accepted()
    world.sup.poll()
    first_background = world.background_of(world.spawned[0])
    world.sup.remove(KEY)
    assert world.stopped_pids == [first_background]
    world.sup.stop_all()
    assert world.stopped_pids == [first_background, world.spawned[1].pid] and world.sup.children == {}


def test_explain_exit():
    assert "refused the forward" in sshargs.explain_exit(
        255, "Error: remote port forwarding failed for listen port 10001\n")
    assert "refused the key" in sshargs.explain_exit(255, "u1@edge: Permission denied (publickey).\n")
    assert sshargs.explain_exit(-9, "") == "killed by signal 9"
    assert sshargs.explain_exit(1, "") == "ssh exited with code 1"


def test_argv_is_a_list_with_the_contract_options():
    argv = sshargs.ssh_argv(SPEC, SETTINGS, "/state/ssh.log")
    assert argv[:5] == ["ssh", "-F", "none", "-f", "-N"]
    assert argv[argv.index("-E") + 1] == "/state/ssh.log"
    for option in ("ExitOnForwardFailure=yes", "BatchMode=yes", "ServerAliveInterval=5", "ServerAliveCountMax=3",
                   "PasswordAuthentication=no", "StrictHostKeyChecking=accept-new", "UserKnownHostsFile=/state/kh"):
        assert option in argv
    assert argv[argv.index("-R") + 1] == "10001:10.96.0.10:8000"
    assert argv[argv.index("-l") + 1] == "u1" and argv[-1] == "edge"
    v6 = sshargs.ssh_argv(sshargs.TunnelSpec(1, "fd00::1", 80, "u"), SETTINGS)
    assert "1:[fd00::1]:80" in v6
    strict = sshargs.ssh_argv(SPEC, sshargs.SshSettings("e", 22, "/k", "/kh", strict_host_keys=True))
    assert "StrictHostKeyChecking=yes" in strict


def test_a_foreground_argv_is_a_plain_ssh_n_for_the_benchmarks():
    argv = sshargs.ssh_argv(SPEC, SETTINGS, "/state/ssh.log", foreground=True)
    assert "-f" not in argv and "-E" not in argv and argv[:4] == ["ssh", "-F", "none", "-N"]
