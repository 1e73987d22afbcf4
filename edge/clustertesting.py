"""Several edge nodes on one real PostgreSQL, for tests, benchmarks and the global demo.

    with PostgresServer() as pg, EdgeCluster(workdir, pg.new_database("e"), 3) as nodes:
        a, b, c = nodes.nodes              # EdgeProcess each, on 127.0.1.1, .2, .3
        nodes.wait_live(3)

Why it is shaped this way: every node listens on its own address with the
same port numbers (as N hosts behind one name would), so a tunnel's
``tunnel_server`` (a host) is all a client needs, and a test kills, stops or
restarts one node like a host. Its plain-HTTP API too (``--api-listen``: the
default on a loopback address, not on the global demo's, where pods reach them).
Ports are fixed, which is safe only inside the private network namespace
`make test` gives every run.
"""

import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .testclients import SshClients, forward_argv
from .testing import EdgeOptions, EdgeProcess

PORTS = {"api": 8080, "ssh": 2222, "http": 8000, "https": 8443}
LINK_PORT = 2223


@dataclass
class ClusterOptions:
    admin: bool = True
    base: str = "127.0.1."          # node i listens on base + str(i + 1)
    extra_args: tuple = ()
    ports: dict = None              # default PORTS
    domain: str = "edge.localhost"


class EdgeCluster:
    def __init__(self, workdir: Path, store_url: str, count: int = 3,
                 options: Optional[ClusterOptions] = None):
        self.options = options or ClusterOptions()
        self.store_url = store_url
        self.nodes = []
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.secret_file = Path(workdir) / "cluster-secret"
        self.secret_file.write_text(secrets.token_hex(24))
        for i in range(count):
            host = "{}{}".format(self.options.base, i + 1)
            node = EdgeProcess(Path(workdir) / "node{}".format(i + 1), EdgeOptions(
                admin=self.options.admin, domain=self.options.domain,
                extra_args=("--store", store_url, "--node-name", "node{}".format(i + 1),
                            "--api-listen", host, "--cluster-secret-file", str(self.secret_file),
                            "--link-port", str(LINK_PORT), *self.options.extra_args)))
            node.host = host
            node._ports.update(self.options.ports or PORTS)
            self.nodes.append(node)

    def __enter__(self) -> "EdgeCluster":
        try:
            for node in self.nodes:      # one at a time: the first creates the shared files
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop()
        if exc_type is not None:
            for node in self.nodes:
                print("---- {} log tail ----\n{}".format(node.host, node.log_tail(30)))
        return False

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def by_host(self, host: str) -> EdgeProcess:
        return next(n for n in self.nodes if n.host == host)

    def health(self, node: EdgeProcess) -> tuple:
        resp = node.api("GET", "/health", timeout=3)
        return resp.status, resp.body

    def wait_live(self, count: int, among: Optional[list] = None, timeout: float = 20.0) -> None:
        """Wait until every node of ``among`` (default: all running) sees ``count`` live nodes."""
        deadline = time.monotonic() + timeout
        among = among or [n for n in self.nodes if n.running]
        seen = None
        while time.monotonic() < deadline:
            seen = [self.health(n)[1].get("live_nodes") for n in among]
            if all(len(s) == count for s in seen):
                return
            time.sleep(0.1)
        raise TimeoutError("live nodes seen: {}".format(json.dumps(seen)))


class TunnelFollower:
    """What a controller does for one tunnel: ask the edge (any node that answers) where the
    tunnel is placed (``tunnel_server``), hold ``ssh -R`` there, and when ssh exits ask again
    and reconnect at once. Every ssh it started is stopped by ``stop()``."""

    def __init__(self, cluster, acct, sock: dict, tunnel: dict, target_port: int, ssh: SshClients):
        self._cluster, self._acct, self._ssh = cluster, acct, ssh
        self._path = "/socket/{}/tunnel/{}".format(sock["socket_id"], tunnel["tunnel_id"])
        self.port, self._target = tunnel["local_port"], target_port
        self.server = tunnel["tunnel_server"]
        self.connects = []                       # (monotonic time, tunnel_server) of each ssh start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _where(self):
        for node in self._cluster.nodes:
            if not node.running:
                continue
            try:
                resp = node.api("GET", self._path, token=self._acct.token, timeout=1)
            except OSError:
                continue
            if resp.status == 200:
                return resp.body["tunnel_server"]
        return None

    def _run(self):
        while not self._stop.is_set():
            server = self._where() or self.server
            self.server = server
            node = self._cluster.by_host(server)
            self.connects.append((time.monotonic(), server))
            proc = self._ssh.start(forward_argv(node, self._acct, self.port, self._target))
            while proc.poll() is None and not self._stop.is_set():
                time.sleep(0.05)
            if not self._stop.is_set():
                time.sleep(0.1)

    def start(self) -> "TunnelFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
