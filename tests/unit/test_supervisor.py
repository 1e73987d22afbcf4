"""The supervisor's state machine, driven through its seams: a fake clock and fake processes."""

import dataclasses
import math

import pytest
from prometheus_client import REGISTRY

from lib import sshargs, tunnels

SETTINGS = sshargs.SshSettings(host="edge", port=2222, identity_file="/state/id", known_hosts_file="/state/kh",
                               strict_host_keys=False)
SPEC = sshargs.TunnelSpec(local_port=10001, target_host="10.96.0.10", target_port=8000, user_name="u1")
KEY = ("demo", "web")


class FakeProc:
    """A spawned ssh: the foreground `ssh -f -M` of a session, or an `ssh -O forward|cancel` client."""

    def __init__(self, world, argv):
        self.world, self.argv = world, argv
        self.pid = world.new_pid()
        self.returncode = None

    def poll(self):
        return self.returncode

    @property
    def kind(self):
        return self.argv[self.argv.index("-O") + 1] if "-O" in self.argv else "master"

    @property
    def forward(self):
        return self.argv[self.argv.index("-R") + 1] if "-R" in self.argv else None

    @property
    def forwards(self):
        """Every -R of the client: one `-O forward` carries the forwards of its session that are ready."""
        return [self.argv[i + 1] for i, arg in enumerate(self.argv) if arg == "-R"]

    def accepted(self):
        """The edge said yes: a master forks its background process (as ssh -f), then the client exits 0."""
        if self.kind == "master":
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

    def last(self, kind=None):
        return [p for p in self.spawned if kind is None or p.kind == kind][-1]

    def of(self, kind):
        return [p for p in self.spawned if p.kind == kind]

    def running(self, kind):
        return [p for p in self.of(kind) if p.returncode is None]

    def background_of(self, proc):
        return next(pid for pid, b in self.background.items() if b["argv"] is proc.argv)

    def answer_all(self):
        """Every master and client still running gets the edge's yes; then the supervisor polls."""
        for _ in range(3):
            for p in self.spawned:
                if p.returncode is None:
                    p.accepted()
            self.sup.poll()

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
                               hang_check_every=0.0, shard_size=20)
    return w


def spec(i):
    return sshargs.TunnelSpec(local_port=10000 + i, target_host="10.96.0.10", target_port=8000, user_name="u1")


def key(i):
    return ("demo", f"svc{i:02d}")


def test_up_only_when_ssh_says_the_edge_accepted_the_session_and_then_the_forward(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    [master] = world.spawned
    session = world.sup.sessions[next(iter(world.sup.sessions))]
    assert master.argv == sshargs.master_argv(sshargs.endpoint_of(SPEC, SETTINGS), SETTINGS,
                                              session.control_path, session.log_path)
    world.now = 60.0                                # however long it takes: time alone is no evidence
    assert world.sup.poll() == [] and not world.sup.is_up(KEY)
    master.accepted()
    assert world.sup.poll() == [] and not world.sup.is_up(KEY)     # the session is up, the forward asked
    [client] = world.of("forward")
    assert client.forward == "10001:10.96.0.10:8000" and session.control_path in client.argv
    client.accepted()
    [t] = world.sup.poll()
    assert (t.kind, t.key) == ("up", KEY) and world.sup.is_up(KEY) and world.sup.tunnels_up() == 1
    assert world.sup.session_of(KEY) in t.detail


def test_an_edge_that_never_answers_is_a_failure_not_a_flap(world):
    """ssh waits for ConnectTimeout, then exits 255: never up, and backed off."""
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    world.now = 10.0
    world.last().refused(255)
    [t] = world.sup.poll()
    assert t.kind == "failed" and t.retry_in == 0.5 and not world.sup.is_up(KEY)


def test_a_forward_the_edge_never_answers_is_killed_and_failed(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    world.last("master").accepted()
    world.sup.poll()
    client = world.last("forward")
    world.now = SETTINGS.connect_timeout + 1.0
    world.sup.poll()
    assert (client.pid, 9) in world.signals
    [t] = world.sup.poll()
    assert t.kind == "failed" and "did not answer" in t.detail


def test_ensure_same_spec_is_a_no_op(world):
    world.sup.ensure(KEY, SPEC)
    world.answer_all()
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    assert [p.kind for p in world.spawned] == ["master", "forward"]


def test_changed_spec_cancels_the_old_forward_before_asking_for_the_new_one(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.ensure(("demo", "other"), spec(2))    # the session stays: it holds another forward
    world.answer_all()
    master_pid = world.background_of(world.of("master")[0])
    world.sup.ensure(KEY, sshargs.TunnelSpec(10001, "10.96.0.10", 9090, "u1"))
    world.sup.poll()
    [cancel] = world.of("cancel")
    assert cancel.forward == "10001:10.96.0.10:8000"
    assert all(p.forward != "10001:10.96.0.10:9090" for p in world.spawned)     # not while the port is held
    cancel.accepted()
    world.sup.poll()
    assert world.last("forward").forward == "10001:10.96.0.10:9090"
    assert master_pid not in world.stopped_pids and len(world.of("master")) == 1


def test_session_backs_off_exponentially_then_resets_once_stable(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    delays = []
    for _ in range(6):
        world.last("master").refused()
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
    world.last("master").accepted()
    world.sup.poll()
    world.last("forward").accepted()
    assert [t.kind for t in world.sup.poll()] == ["up"]
    world.now += 10.5
    world.sup.poll()                                # stayed up: the backoff is reset
    world.background[world.background_of(world.last("master"))]["code"] = 255
    [t] = world.sup.poll()
    assert t.kind == "down" and t.retry_in == 0.0
    assert len(world.of("master")) == 8             # a session that was up is restarted at once
    world.last("master").refused()
    assert world.sup.poll()[0].retry_in == 0.5      # and its backoff starts again from 0.5 s


def test_a_session_that_dies_soon_after_up_backs_off_like_one_never_up(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    delays = []
    for _ in range(3):
        world.answer_all()
        assert world.sup.is_up(KEY)
        world.now += 1.0
        world.background[world.background_of(world.last("master"))]["code"] = 255
        [t] = world.sup.poll()
        assert t.kind == "failed" and "up only 1.0s" in t.detail
        delays.append(t.retry_in)
        world.now += t.retry_in
        world.sup.poll()
    assert delays == [0.5, 1.0, 2.0]


def test_a_forward_is_asked_for_at_once_and_a_new_session_started_at_once(world):
    """Not on the next poll: the loop polls every quarter second when idle, and the name would wait."""
    world.sup.ensure(key(0), spec(0))
    assert [p.kind for p in world.spawned] == ["master"] and world.sup.busy()
    world.answer_all()
    assert not world.sup.busy()
    world.sup.ensure(key(1), spec(1))
    assert [p.kind for p in world.spawned] == ["master", "forward", "forward"] and world.sup.busy()


def batch_asked(world, count):
    """`count` forwards ensured at once, their session up: the one `-O forward` client that carries them."""
    for i in range(count):
        world.sup.ensure(key(i), spec(i))
    world.sup.poll()
    world.last("master").accepted()
    world.sup.poll()
    [client] = world.of("forward")
    return client


def test_a_refused_forward_fails_alone_and_is_asked_again_after_its_backoff(world):
    """The three go in one `-O forward` client; ssh names the refused one by its port (mux.c), so that one
    fails alone and the others are up."""
    client = batch_asked(world, 3)
    assert client.forwards == [f"{10000 + i}:10.96.0.10:8000" for i in range(3)]
    session = world.sup.sessions[next(iter(world.sup.sessions))]
    with open(session.asks_log, "w") as log:
        log.write("mux_client_forward: forwarding request failed: "
                  "remote port forwarding failed for listen port 10001\n")
    client.refused()
    transitions = world.sup.poll()
    assert sorted((t.key, t.kind) for t in transitions) == [(key(0), "up"), (key(1), "failed"), (key(2), "up")]
    [failed] = [t for t in transitions if t.kind == "failed"]
    assert "refused the forward" in failed.detail and failed.retry_in == 0.5
    [cancel] = world.running("cancel")              # the master may keep it listed: the retry asks anew
    assert cancel.forward == "10001:10.96.0.10:8000"
    cancel.accepted()
    world.now += 0.5
    world.sup.poll()
    assert world.last("forward").forwards == ["10001:10.96.0.10:8000"] and len(world.of("master")) == 1
    assert world.stopped_pids == [] and world.sup.is_up(key(0)) and world.sup.is_up(key(2))


def test_a_client_that_names_no_refusal_fails_its_whole_batch_and_one_asked_meanwhile_waits_for_the_next(world):
    """Killed (no answer within the timeout) or ended without naming a port, ssh has not said which forward
    the edge took: none is up. A forward ensured while a client is on its way goes in the next one."""
    client = batch_asked(world, 2)
    world.sup.ensure(key(2), spec(2))
    assert len(world.of("forward")) == 1 and world.sup.busy()
    world.now = SETTINGS.connect_timeout + 1.0
    world.sup.poll()
    assert (client.pid, 9) in world.signals
    transitions = world.sup.poll()
    assert sorted((t.key, t.kind) for t in transitions) == [(key(0), "failed"), (key(1), "failed")]
    assert all("did not answer" in t.detail for t in transitions)
    assert world.last("forward").forwards == ["10002:10.96.0.10:8000"]     # the others wait out their backoff


def test_a_forward_removed_while_its_batch_is_on_its_way_leaves_the_others_alone_and_is_cancelled_after(world):
    client = batch_asked(world, 3)
    world.sup.remove(key(1))
    assert client.returncode is None and world.stopped_pids == []
    client.accepted()
    transitions = world.sup.poll()
    assert sorted((t.key, t.kind) for t in transitions) == [(key(0), "up"), (key(2), "up")]
    [cancel] = world.of("cancel")
    assert cancel.forward == "10001:10.96.0.10:8000"


def test_forwards_fill_the_lowest_shard_with_room_and_never_move(world):
    for i in range(45):
        world.sup.ensure(key(i), spec(i))
    assert sorted(len(s.keys) for s in world.sup.sessions.values()) == [5, 20, 20]
    shard_of = {key(i): world.sup.session_of(key(i)) for i in range(45)}
    for i in (3, 4, 21):
        world.sup.remove(key(i))
    for i in (50, 51, 52, 53):
        world.sup.ensure(key(i), spec(i))
    assert [world.sup.session_of(key(i))[-2:] for i in (50, 51, 52, 53)] == ["#0", "#0", "#1", "#2"]
    assert all(world.sup.session_of(k) == shard for k, shard in shard_of.items() if k in world.sup.forwards)
    other_user = sshargs.TunnelSpec(20000, "10.96.0.10", 80, "u2")     # another endpoint: its own session
    world.sup.ensure(("demo", "u2"), other_user)
    assert world.sup.session_of(("demo", "u2")) != world.sup.session_of(key(0)) and len(world.sup.sessions) == 4


def test_a_session_death_restarts_only_its_shard(world):
    for i in range(25):
        world.sup.ensure(key(i), spec(i))
    world.answer_all()
    assert world.sup.tunnels_up() == 25
    first, second = (world.sup.sessions[k] for k in sorted(world.sup.sessions, key=lambda k: k[1]))
    spawned, stopped = len(world.spawned), list(world.stopped_pids)
    world.now = 30.0
    world.background[first.background]["code"] = -9
    transitions = world.sup.poll()
    assert sorted(t.key for t in transitions) == sorted(first.keys) and {t.kind for t in transitions} == {"down"}
    assert [p.kind for p in world.spawned[spawned:]] == ["master"]      # one new master, nothing else
    assert world.stopped_pids == stopped and second.up
    assert all(world.sup.is_up(k) for k in second.keys) and world.sup.tunnels_up() == 5
    world.answer_all()
    assert world.sup.tunnels_up() == 25
    [again] = [p for p in world.spawned[spawned:] if p.kind == "forward"]   # one client asks for all 20
    assert len(again.forwards) == 20


def test_adding_and_removing_a_forward_touches_no_other(world):
    for i in range(5):
        world.sup.ensure(key(i), spec(i))
    world.answer_all()
    spawned, stopped = len(world.spawned), list(world.stopped_pids)
    world.sup.ensure(key(7), spec(7))
    world.sup.remove(key(2))
    world.answer_all()
    assert sorted((p.kind, p.forward) for p in world.spawned[spawned:]) == [
        ("cancel", "10002:10.96.0.10:8000"), ("forward", "10007:10.96.0.10:8000")]
    assert world.stopped_pids == stopped and world.sup.tunnels_up() == 5


def test_the_probe_restarts_one_forward_not_its_session(world):
    before = REGISTRY.get_sample_value("mysocketd_ssh_restarts_total")
    for i in range(3):
        world.sup.ensure(key(i), spec(i))
    world.answer_all()
    spawned = len(world.spawned)
    world.sup.restart(key(1))
    assert not world.sup.is_up(key(1)) and world.sup.is_up(key(0))
    world.answer_all()
    assert [(p.kind, p.forward) for p in world.spawned[spawned:]] == [
        ("cancel", "10001:10.96.0.10:8000"), ("forward", "10001:10.96.0.10:8000")]
    assert world.sup.is_up(key(1)) and world.stopped_pids == []
    assert REGISTRY.get_sample_value("mysocketd_ssh_restarts_total") - before == 1


def test_a_hung_session_is_killed_and_restarted(world):
    before = REGISTRY.get_sample_value("mysocketd_ssh_restarts_total")
    world.sup.ensure(KEY, SPEC)
    world.answer_all()
    world.now = 30.0
    background = world.background_of(world.last("master"))
    world.hung.add(background)
    [t] = world.sup.poll()
    assert t.kind == "down" and (background, 9) in world.signals
    assert len(world.of("master")) == 2
    assert REGISTRY.get_sample_value("mysocketd_ssh_restarts_total") - before == 1


def test_a_session_that_cannot_be_started_is_a_failure_with_backoff(world):
    def no_pids(argv, log_path):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    world.sup.os = dataclasses.replace(world.sup.os, spawn=no_pids)
    world.sup.ensure(KEY, SPEC)
    [t] = world.sup.poll()
    assert t.kind == "failed" and "cannot start ssh" in t.detail and t.retry_in == 0.5


def test_a_session_stopped_while_starting_leaves_no_background_ssh(world):
    """The foreground may fork its master just as it is told to stop: that one is ended too."""
    world.sup.ensure(KEY, SPEC)
    world.sup.poll()
    starting = world.last("master")
    starting.accepted()                             # forked, but the supervisor has not polled yet
    background = world.background_of(starting)
    world.sup.remove(KEY)                           # the last forward: the session goes
    assert starting.pid in world.stopped_pids and background in world.stopped_pids


def test_removing_the_last_forward_ends_its_session_and_stop_all_signals_every_process(world):
    world.sup.ensure(KEY, SPEC)
    world.sup.ensure(("demo", "api"), sshargs.TunnelSpec(10002, "10.96.0.11", 80, "u2"))   # its own session
    world.answer_all()
    first, second = (world.background_of(p) for p in world.of("master"))
    world.sup.remove(KEY)
    assert world.stopped_pids == [first] and len(world.sup.sessions) == 1
    world.sup.stop_all()
    assert world.stopped_pids == [first, second] and world.sup.forwards == {} and world.sup.sessions == {}


def test_explain_exit():
    assert "refused the forward" in sshargs.explain_exit(
        255, "Error: remote port forwarding failed for listen port 10001\n")
    assert "refused the key" in sshargs.explain_exit(255, "u1@edge: Permission denied (publickey).\n")
    assert sshargs.explain_exit(-9, "") == "killed by signal 9"
    assert sshargs.explain_exit(1, "") == "ssh exited with code 1"


def test_master_and_forward_argvs():
    endpoint = sshargs.endpoint_of(SPEC, SETTINGS)
    assert endpoint == sshargs.Endpoint("edge", 2222, "u1")
    master = sshargs.master_argv(endpoint, SETTINGS, "/ctl/s0", "/state/s0.log")
    assert master[:5] == ["ssh", "-F", "none", "-f", "-N"] and "-R" not in master
    assert master[master.index("-S") + 1] == "/ctl/s0" and "-M" in master and master[-1] == "edge"
    for option in ("ExitOnForwardFailure=yes", "BatchMode=yes", "ServerAliveInterval=5", "ControlPersist=no"):
        assert option in master
    forward = sshargs.forward_argv(SPEC, endpoint, SETTINGS, "/ctl/s0")
    assert forward[forward.index("-O") + 1] == "forward" and forward[forward.index("-R") + 1] == "10001:10.96.0.10:8000"
    cancel = sshargs.forward_argv(SPEC, endpoint, SETTINGS, "/ctl/s0", cancel=True)
    assert cancel[cancel.index("-O") + 1] == "cancel" and cancel[-1] == "edge"


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


def test_a_routes_key_with_a_slash_logs_to_a_file_in_the_log_directory(world, tmp_path):
    """A route's forward is keyed by its backend (namespace/service:port): its log must not be a path into a
    directory that does not exist (every route forward then failed with ENOENT)."""
    world.sup.ensure(("route", "abcd-1234", "shop/web:8000", ""), spec(0))
    log_path = world.sup.sessions[next(iter(world.sup.sessions))].asks_log
    assert "/" not in log_path[len(str(tmp_path)) + 1:] and log_path.startswith(str(tmp_path))


def test_at_rest_a_poll_looks_at_no_forward_until_one_may_be_asked_again(world):
    """1,000 forwards at rest cost a poll nothing per forward: each session says when one of its forwards
    may be ready (a backoff's end), and a look at every one happens once a second as a safety net."""
    for i in range(3):
        world.sup.ensure(key(i), spec(i))
    world.answer_all()
    [session] = world.sup.sessions.values()
    assert all(world.sup.is_up(key(i)) for i in range(3)) and session.next_ask == math.inf
    looked = []
    forwards = world.sup.forwards

    class Counting(dict):
        def __getitem__(self, k):
            looked.append(k)
            return super().__getitem__(k)
    world.sup.forwards = Counting(forwards)
    world.now += 0.25
    world.sup.poll()
    assert looked == []
    world.now += 1.0
    world.sup.poll()                                    # the safety net: once a second
    assert sorted(looked) == [key(i) for i in range(3)]
