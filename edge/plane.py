"""The Go data plane as the Python edge sees it: a supervised child and its control socket.

Why it is shaped this way:
- The bytes (SSH server, HTTP/HTTPS/TLS/TCP fronts) go through one Go process
  (edge/dataplane/, see edge/README.md for the measurements behind that);
  accounts, sockets, quotas and the REST API stay here. This module is the
  only place that knows the child exists.
- State goes one way: the whole picture once (``push()``, at start and after
  a restart of the child), then only what changed (``push_delta()``, one
  PATCH per batch of changes, so a change costs the same with 10 sockets or
  10,000), each with a growing version number. Pushes are serialised, so the
  child never sees an older picture after a newer one, and the API answers its
  client only once the data plane knows (an ``ssh -R`` right after ``POST
  /connect`` works). The live nodes go the same way (``set_nodes()``), and
  the child tells which forwards came up (``events()``).
- The child is supervised: if it dies, it is started again on the same
  ports, given the current snapshot and its tcp ports again, and the log
  says so. Stopping sends SIGTERM and waits, then SIGKILL.
- ``up`` is true only between a start that pushed the state and the child's
  exit: the API asks it before anything else (edge.api answers 503 with
  Retry-After meanwhile), so no request can find the data plane half there.
"""

import asyncio
import logging
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import aiohttp

from .binary import ensure_built

log = logging.getLogger(__name__)

_READY = re.compile(r"DATAPLANE READY ssh=(\S+):(\d+) http=(\S+):(\d+) https=(\S+):(\d+)"
                    r"(?: link=(\S+):(\d+))?(?: dns=(\S+):(\d+))?")
READY_TIMEOUT = 20.0


class DataPlaneError(Exception):
    """The data plane could not start or did not do what was asked."""


@dataclass
class PlaneOptions:
    listen: str
    ports: dict                 # {"ssh", "http", "https", "link", "dns"}: n; 0 = any, replaced once known
    data_dir: Path
    host_key: Path
    domain: str
    api_name: str
    api_upstream: str
    extra_args: list = field(default_factory=list)


class DataPlane:
    def __init__(self, options: PlaneOptions, snapshot: Callable[[], dict],
                 tcp_ports: Callable[[], list]):
        self.options = options
        self._snapshot = snapshot          # () -> the state dict to push (without version)
        self._tcp_ports = tcp_ports        # () -> tcp ports to (re)open after a restart
        self._proc: Optional[asyncio.subprocess.Process] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._lock = asyncio.Lock()
        self._version = 0
        self._stopping = False
        self._watch: Optional[asyncio.Task] = None
        self._up = False
        self._nodes: Optional[dict] = None   # the last set_nodes(), sent again after a restart
        self._wildcard: Optional[dict] = None  # the zone's certificate, installed again likewise
        self._hostcerts: dict = {}              # custom hostnames' certificates, installed again likewise
        self.control = options.data_dir / "dataplane.sock"

    @property
    def up(self) -> bool:
        """Started, given the state, and not exited since."""
        return self._up and self._proc is not None and self._proc.returncode is None

    @property
    def ports(self) -> dict:
        return dict(self.options.ports)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and not self._stopping

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def _argv(self, binary: Path) -> list:
        o = self.options
        link = ["--link-port", str(o.ports["link"])] if "link" in o.ports else []
        if "dns" in o.ports:        # the zone's own DNS (internal/dns), UDP and TCP
            host = "[{}]".format(o.listen) if ":" in o.listen else o.listen
            link += ["--dns-listen", "{}:{}".format(host, o.ports["dns"])]
        return [str(binary), "--listen", o.listen, "--ssh-port", str(o.ports["ssh"]),
                "--http-port", str(o.ports["http"]), "--https-port", str(o.ports["https"]), *link,
                "--control", str(self.control), "--host-key", str(o.host_key),
                "--data-dir", str(o.data_dir), "--domain", o.domain, "--api-name", o.api_name,
                "--api-upstream", o.api_upstream, *o.extra_args]

    async def start(self) -> None:
        binary = await asyncio.to_thread(ensure_built)
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(binary), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=None)
        try:
            line = await asyncio.wait_for(self._ready_line(), READY_TIMEOUT)
        except asyncio.TimeoutError:
            await self._kill()
            raise DataPlaneError("the data plane did not become ready in time") from None
        if line is None:
            code = await self._proc.wait()
            raise DataPlaneError("the data plane exited with status {} (see the log above)".format(code))
        m = _READY.search(line)
        self.options.ports = {"ssh": int(m.group(2)), "http": int(m.group(4)), "https": int(m.group(6))}
        if m.group(8):
            self.options.ports["link"] = int(m.group(8))
        if m.group(10):
            self.options.ports["dns"] = int(m.group(10))
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.control)),
                timeout=aiohttp.ClientTimeout(total=30))
        await self.push()
        if self._nodes is not None:
            await self._call("PUT", "/nodes", self._nodes)
        if self._wildcard is not None:
            await self._call("PUT", "/wildcard", self._wildcard)
        for body in list(self._hostcerts.values()):
            await self._call("PUT", "/hostcert", body)
        for port in self._tcp_ports():
            try:
                await self.open_tcp(port)
            except DataPlaneError as exc:
                log.error("tcp port %d: %s", port, exc)
        self._up = True
        self._watch = asyncio.ensure_future(self._supervise(self._proc))

    async def _ready_line(self) -> Optional[str]:
        while True:
            raw = await self._proc.stdout.readline()
            if not raw:
                return None
            text = raw.decode(errors="replace")
            if _READY.search(text):
                return text

    async def _supervise(self, proc) -> None:
        code = await proc.wait()
        self._up = False
        if self._stopping:
            return
        log.error("the data plane exited unexpectedly (status %s); starting it again", code)
        delay = 0.5
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self.start()
                log.info("the data plane is back")
                return
            except (DataPlaneError, OSError) as exc:
                log.error("the data plane did not start again: %s", exc)
                delay = min(delay * 2, 10)

    async def restart(self) -> None:
        """Start the child again on the same ports (new files in the data dir), with the state."""
        await self._terminate()
        self._stopping = False
        await self.start()

    async def _terminate(self) -> None:
        """SIGTERM, up to 3 s, then SIGKILL; no restart (``_stopping``)."""
        self._stopping = True
        self._up = False
        if self._watch:
            self._watch.cancel()
        if self._proc and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), 3)
            except asyncio.TimeoutError:
                await self._kill()

    async def stop(self) -> None:
        await self._terminate()
        if self._session:
            await self._session.close()

    async def _kill(self) -> None:
        if self._proc and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    # -- control calls ---------------------------------------------------
    async def _call(self, method: str, path: str, body=None, timeout: float = 30.0):
        if self._session is None:
            raise DataPlaneError("the data plane has not started yet")
        try:
            async with self._session.request(method, "http://dataplane" + path, json=body,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                data = await resp.json()
                if resp.status != 200:
                    raise DataPlaneError(data.get("error_message", "status {}".format(resp.status)))
                return data
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DataPlaneError("the data plane is not reachable: {}".format(exc)) from exc

    async def check_routes(self, table: dict) -> str:
        """'' when the data plane can serve this route table, else why not (one line)."""
        try:
            async with self._session.post("http://dataplane/routes/check", json=table) as resp:
                data = await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DataPlaneError("the data plane is not reachable: {}".format(exc)) from exc
        return "" if resp.status == 200 else data.get("error_message", "status {}".format(resp.status))

    async def push(self) -> None:
        """Send the current state; returns once the data plane applied it."""
        async with self._lock:
            self._version += 1
            state = dict(self._snapshot(), version=self._version)
            await self._call("PUT", "/state", state)

    async def push_delta(self, delta: dict) -> None:
        """Send only what changed (edge.planestate.delta_json); returns once applied."""
        async with self._lock:
            self._version += 1
            await self._call("PATCH", "/state", dict(delta, version=self._version))

    async def set_nodes(self, nodes: dict) -> None:
        """This node and the live nodes' links (edge.planestate.nodes_json)."""
        self._nodes = nodes
        await self._call("PUT", "/nodes", nodes)

    async def wildcard_begin(self) -> list:
        """Order the zone's wildcard by DNS-01: the TXT values every node must answer."""
        return (await self._call("POST", "/wildcard/begin", timeout=90))["txt"]

    async def wildcard_finish(self) -> dict:
        """Let the CA check them; the certificate, served here already: ``{cert, key,
        not_before, not_after}``."""
        got = await self._call("POST", "/wildcard/finish", timeout=150)
        self._wildcard = {"cert": got["cert"], "key": got["key"]}
        return got

    async def wildcard_install(self, cert: str, key: str) -> dict:
        """Serve the zone's certificate from the store; its ``{not_before, not_after}``."""
        self._wildcard = {"cert": cert, "key": key}
        return await self._call("PUT", "/wildcard", self._wildcard)

    async def hostcert_begin(self, name: str) -> dict:
        """Order a custom hostname's certificate by HTTP-01: the answers every node must give
        (token -> key authorization)."""
        return (await self._call("POST", "/hostcert/begin", {"name": name}, timeout=90))["http01"]

    async def hostcert_finish(self, name: str) -> dict:
        """Let the CA check them; the certificate, served here already: ``{cert, key, not_before,
        not_after}``."""
        got = await self._call("POST", "/hostcert/finish", {"name": name}, timeout=150)
        self._hostcerts[name] = {"name": name, "cert": got["cert"], "key": got["key"]}
        return got

    async def hostcert_install(self, name: str, cert: str, key: str) -> dict:
        """Serve a custom hostname's certificate from the store; its ``{not_before, not_after}``."""
        self._hostcerts[name] = {"name": name, "cert": cert, "key": key}
        return await self._call("PUT", "/hostcert", self._hostcerts[name])

    async def events(self, after: int, wait: float = 10.0) -> dict:
        """Forwards that came up or went down after event ``after`` (waits up to ``wait`` s
        for one): ``{"boot": id, "next": n, "events": [{"kind", "local_port"}]}``."""
        return await self._call("GET", "/events?after={}&wait={}".format(after, wait))

    async def open_tcp(self, port: int) -> int:
        return (await self._call("POST", "/tcp/open", {"port": port}))["port"]

    async def close_tcp(self, port: int) -> None:
        await self._call("POST", "/tcp/close", {"port": port})

    async def tunnels(self, everywhere: bool = False) -> list:
        """Forwards held here; ``everywhere``: and those every other live node holds (asked over
        the link between nodes, a second at most)."""
        return await self._call("GET", "/tunnels" + ("?everywhere=1" if everywhere else ""))

    async def signin_keys(self) -> dict:
        """What the assertions of a sign-in to the edge's own name are verified with:
        ``{"issuer", "audience", "jwks"}`` (internal/signin; DataPlaneError without a provider)."""
        return await self._call("GET", "/signin/keys", timeout=5.0)

    async def metrics(self) -> bytes:
        """The data plane's metrics, Prometheus text (internal/metrics)."""
        if self._session is None:
            raise DataPlaneError("the data plane has not started yet")
        try:
            async with self._session.get("http://dataplane/metrics",
                                         timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise DataPlaneError("metrics: status {}".format(resp.status))
                return await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DataPlaneError("the data plane is not reachable: {}".format(exc)) from exc

    async def drop_ssh(self) -> int:
        return (await self._call("POST", "/drop-ssh"))["dropped"]

    async def forget_forward(self, local_port: int) -> int:
        return (await self._call("POST", "/forget-forward", {"local_port": local_port}))["forgotten"]
