"""The supervisor's state machine, driven through its seams: a fake clock and fake processes."""

import pytest
from prometheus_client import REGISTRY

from lib import sshargs, tunnels

SETTINGS = sshargs.SshSettings(host="edge", port=2222, identity_file="/state/id", known_hosts_file="/state/kh",
                               strict_host_keys=False)
SPEC = sshargs.TunnelSpec(local_port=10001, target_host="10.96.0.10", target_port=8000, user_name="u1")
KEY = ("demo", "web")


class FakeProc:
    pids = iter(range(1000, 100000))

    def __init__(self, argv):
        self.argv = argv
        self.pid = next(self.pids)
        self.returncode = None
        self.signals = []
        self.hung = False

    def poll(self):
        return self.returncode

    def exit(self, code):
        self.returncode = code

    def send_signal(self, sig):
        self.signals.append(sig)
        self.returncode = -sig

    def kill(self):
        self.send_signal(9)

    def wait(self, timeout=None):
        return self.returncode


@pytest.fixture
def world(tmp_path):
    class World:
        now = 0.0
        spawned = []

        def spawn(self, argv, log_path):
            proc = FakeProc(argv)
            self.spawned.append(proc)
            return proc

    w = World()
    w.sup = tunnels.Supervisor(SETTINGS, str(tmp_path), spawn=w.spawn, clock=lambda: w.now,
                               jitter=lambda a, b: 1.0, is_stopped=lambda p: p.hung, up_after=2.0,
                               backoff_cap=8.0, stop_timeout=0.1, hang_check_every=0.0)
    return w


def test_up_only_after_it_stayed_up(world):
    world.sup.ensure(KEY, SPEC)
    assert len(world.spawned) == 1 and world.spawned[0].argv == sshargs.ssh_argv(SPEC, SETTINGS)
    world.now = 1.0
    assert world.sup.poll() == [] and not world.sup.is_up(KEY)
    world.now = 2.0
    [t] = world.sup.poll()
    assert (t.kind, t.key) == ("up", KEY) and world.sup.is_up(KEY)


def test_ensure_same_spec_is_a_no_op(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.ensure(KEY, SPEC)
    assert len(world.spawned) == 1


def test_changed_spec_replaces_the_child(world):
    world.sup.ensure(KEY, SPEC)
    first = world.spawned[0]
    world.sup.ensure(KEY, sshargs.TunnelSpec(10001, "10.96.0.10", 9090, "u1"))
    assert first.signals == [15] and len(world.spawned) == 2
    assert "10001:10.96.0.10:9090" in world.spawned[1].argv


def test_quick_exits_back_off_exponentially_then_reset_once_up(world):
    world.sup.ensure(KEY, SPEC)
    delays = []
    for _ in range(6):
        world.spawned[-1].exit(255)
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
    world.now += 2.0
    assert [t.kind for t in world.sup.poll()] == ["up"]
    world.spawned[-1].exit(255)
    [t] = world.sup.poll()
    assert t.kind == "down" and t.retry_in == 0.0
    assert len(world.spawned) == 8                  # a child that was up is restarted at once
    world.spawned[-1].exit(255)
    assert world.sup.poll()[0].retry_in == 0.5      # and its backoff starts again from 0.5 s


def test_a_hung_child_is_killed_and_restarted(world):
    before = REGISTRY.get_sample_value("mysocketd_ssh_restarts_total")
    world.sup.ensure(KEY, SPEC)
    world.now = 3.0
    world.sup.poll()
    world.spawned[0].hung = True
    world.now = 4.0
    [t] = world.sup.poll()
    assert t.kind == "down" and world.spawned[0].signals == [9]
    assert len(world.spawned) == 2
    assert REGISTRY.get_sample_value("mysocketd_ssh_restarts_total") - before == 1


def test_remove_and_stop_all_signal_every_child(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.ensure(("demo", "api"), sshargs.TunnelSpec(10002, "10.96.0.11", 80, "u1"))
    world.sup.remove(KEY)
    assert world.spawned[0].signals == [15] and world.spawned[1].signals == []
    world.sup.stop_all()
    assert world.spawned[1].signals == [15] and world.sup.children == {}


def test_explain_exit():
    assert "refused the forward" in sshargs.explain_exit(
        255, "Error: remote port forwarding failed for listen port 10001\n")
    assert "refused the key" in sshargs.explain_exit(255, "u1@edge: Permission denied (publickey).\n")
    assert sshargs.explain_exit(-9, "") == "killed by signal 9"
    assert sshargs.explain_exit(1, "") == "ssh exited with code 1"


def test_argv_is_a_list_with_the_contract_options():
    argv = sshargs.ssh_argv(SPEC, SETTINGS)
    assert argv[:4] == ["ssh", "-F", "none", "-N"]
    for option in ("ExitOnForwardFailure=yes", "BatchMode=yes", "ServerAliveInterval=5", "ServerAliveCountMax=3",
                   "PasswordAuthentication=no", "StrictHostKeyChecking=accept-new", "UserKnownHostsFile=/state/kh"):
        assert option in argv
    assert argv[argv.index("-R") + 1] == "10001:10.96.0.10:8000"
    assert argv[argv.index("-l") + 1] == "u1" and argv[-1] == "edge"
    v6 = sshargs.ssh_argv(sshargs.TunnelSpec(1, "fd00::1", 80, "u"), SETTINGS)
    assert "1:[fd00::1]:80" in v6
    strict = sshargs.ssh_argv(SPEC, sshargs.SshSettings("e", 22, "/k", "/kh", strict_host_keys=True))
    assert "StrictHostKeyChecking=yes" in strict
