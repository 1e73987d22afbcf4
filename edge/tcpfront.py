"""Public TCP ports of ``tcp`` sockets: one listener per socket, spliced to its tunnels.

Why it is shaped this way:
- A tcp socket's public port is bound when the socket is created (the bind IS
  the allocation: the API asks ``open_new()`` for a bound port first and only
  then stores the socket, so a port another process holds is skipped rather
  than promised), re-bound at start-up for existing sockets, and closed when
  the socket is deleted.
- Ports come from ``--tcp-ports``: a range ``A-B`` (lowest free one not used
  by another socket), or ``0`` (let the OS choose; handy for tests that run
  several edges at once). The chosen port is stored, so a restart re-binds it.
- A connection's socket is looked up by the port it arrived on at accept
  time, so a connection racing with the socket's deletion is simply closed.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Optional

from .forwards import NoTunnel
from .splice import splice, track_current_task
from .state import EdgeState

log = logging.getLogger(__name__)


class NoFreeTcpPort(Exception):
    """Every port of --tcp-ports is in use."""


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> "PortRange":
        """'20000-20999' -> PortRange(20000, 20999); '0' -> OS-chosen ports."""
        first, sep, last = text.strip().partition("-")
        lo = int(first)
        hi = int(last) if sep else lo
        if not (0 <= lo <= hi <= 65535) or (lo == 0 and hi != 0):
            raise ValueError("bad port range {!r}".format(text))
        return cls(lo, hi)

    @property
    def os_chooses(self) -> bool:
        return self.first == 0


class TcpFront:
    def __init__(self, state: EdgeState, listen_host: str, ports: PortRange):
        self._store = state.store
        self._registry = state.registry
        self._tasks = state.tasks
        self._servers: dict = {}   # port -> asyncio.Server
        self.listen_host = listen_host
        self.ports = ports

    async def _bind(self, port: int) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._handle, self.listen_host, port)

    async def start_existing(self) -> None:
        for sock in self._store.tcp_sockets():
            try:
                self._servers[sock.tcp_port] = await self._bind(sock.tcp_port)
                log.info("tcp socket %s listening on %s:%d", sock.dnsname,
                         self.listen_host, sock.tcp_port)
            except OSError as exc:
                log.error("tcp socket %s: cannot bind port %d: %s",
                          sock.dnsname, sock.tcp_port, exc)

    async def open_new(self) -> int:
        """Bind a free public port for a new tcp socket and return it."""
        if self.ports.os_chooses:
            server = await self._bind(0)
            port = server.sockets[0].getsockname()[1]
            self._servers[port] = server
            return port
        used = self._store.used_tcp_ports() | set(self._servers)
        for port in range(self.ports.first, self.ports.last + 1):
            if port in used:
                continue
            try:
                self._servers[port] = await self._bind(port)
                return port
            except OSError:
                continue
        raise NoFreeTcpPort()

    async def close(self, port: Optional[int]) -> None:
        server = self._servers.pop(port, None)
        if server is not None:
            server.close()
            log.info("tcp port %d closed", port)

    async def stop(self) -> None:
        for port in list(self._servers):
            await self.close(port)

    async def _handle(self, reader, writer) -> None:
        port = (writer.get_extra_info("sockname") or ("", 0))[1]
        with track_current_task(self._tasks):
            try:
                sock = self._store.socket_by_tcp_port(port)
                if sock is None:
                    return
                ports = [t.local_port for t in self._store.tunnels_of(sock.socket_id)]
                tunnel = await self._registry.open_channel(
                    sock.socket_id, ports, writer.get_extra_info("peername") or ("", 0))
                await splice((reader, writer), tunnel)
            except NoTunnel as exc:
                log.info("tcp port %d: %s", port, exc)
            except (ConnectionError, asyncio.CancelledError):
                pass   # a reset, or shutdown (see HttpFront.handle on cancellation)
            finally:
                writer.close()
