"""The loop never waits on the network: a login the edge holds holds up no ssh supervision.

The edge here is a real socket on 127.0.0.1 that accepts the connection and
reads `POST /login`, then never answers (as an edge whose store hangs); the
client, the session and the runner are the real ones. The supervisor and the
controller are fakes that count: the loop must keep polling the ssh sessions
while the login is still unanswered.
"""

import dataclasses
import socket
import threading

import pytest

from devcluster.stack import wait_for
from lib import mysocket
from lib.runner import Runner, Session
from lib.workqueue import WorkQueue


class HeldEdge:
    """Accepts connections and reads what comes; answers nothing until closed."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.requests = []
        self.conns = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        try:
            data = conn.recv(65536)
            if data:
                self.requests.append(data.split(b"\r\n", 1)[0].decode())
            self._closed.wait(30)
        except OSError:
            pass

    def close(self):
        self._closed.set()
        for conn in [self.listener, *self.conns]:
            conn.close()


class Supervisor:
    def __init__(self):
        self.polls = 0
        self.sessions = {}

    def poll(self):
        self.polls += 1
        return []

    def tunnels_up(self):
        return 0

    def end_leftovers(self):
        return 0

    def busy(self):
        return False

    def stop_all(self):
        pass

    def is_up(self, key):
        return False


class Remote:
    def collect(self):
        return set()

    def busy(self, key):
        return False

    def close(self):
        pass


class Controller:
    records = {}
    user_name = None

    def __init__(self):
        self.remote = Remote()

    def follow_nodes(self):
        pass


class Watcher:
    def __init__(self):
        self.synced = threading.Event()
        self.watching = True

    def start(self):
        self.synced.set()

    def stop(self):
        pass

    def is_alive(self):
        return True


@dataclasses.dataclass
class Config:
    resync_seconds: int = 300
    known_hosts: str = ""


@pytest.fixture
def edge(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    held = HeldEdge()
    yield held
    held.close()


def test_a_held_login_holds_up_no_ssh_supervision(edge, tmp_path):
    api = mysocket.Client(edge.url, "ops@example.com", "pw", timeout=(5, 30))
    supervisor = Supervisor()
    runner = Runner(config=Config(), session=Session(api, public_key=""), controller=Controller(),
                    watcher=Watcher(), supervisor=supervisor, queue=WorkQueue(),
                    known_hosts=str(tmp_path / "known_hosts"))
    stopping = threading.Event()
    loop = threading.Thread(target=runner.run, args=(stopping,), daemon=True)
    loop.start()
    try:
        wait_for("the login to reach the edge", lambda: edge.requests == ["POST /login HTTP/1.1"], timeout=10)
        polls = supervisor.polls
        # The edge still holds the login (its read timeout is 30 s): the loop goes on supervising.
        wait_for("ssh supervision while the login is held", lambda: supervisor.polls >= polls + 8, timeout=10)
        assert edge.requests == ["POST /login HTTP/1.1"] and not runner.session.ok
        assert "not answered yet" in runner.readiness()[1]
    finally:
        stopping.set()
        runner.queue.wake()
        edge.close()
        loop.join(10)
    assert not loop.is_alive()


def test_a_sweep_waiting_for_its_list_is_tried_again_when_the_list_ends_not_on_every_turn(tmp_path):
    """Each try walks every Service and waits out the remote budget: tried on every turn while its list
    was on its way, a burst of 1,000 Services left the loop little time for anything else."""
    from lib.controller import SWEEP
    from lib.remote import Pending

    class Sweeping(Controller):
        def __init__(self):
            super().__init__()
            self.sweeps = 0
            self.ended = set()
            self.remote.collect = lambda: self.ended

        def resync(self):
            self.sweeps += 1
            raise Pending("list sockets")

    controller = Sweeping()
    runner = Runner(config=Config(), session=Session(None, public_key=""), controller=controller,
                    watcher=Watcher(), supervisor=Supervisor(), queue=WorkQueue(),
                    known_hosts=str(tmp_path / "known_hosts"))
    runner._acting, runner._next_sweep = True, 0.0
    for _ in range(5):
        runner._collect()
        runner._sweep_if_due()
    assert controller.sweeps == 1
    controller.ended = {SWEEP}              # its list came back
    runner._collect()
    runner._sweep_if_due()
    assert controller.sweeps == 2
