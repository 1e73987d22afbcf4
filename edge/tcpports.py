"""Public ports of ``tcp`` sockets: which number a new socket gets.

Why it is shaped this way:
- The data plane binds the port (binding IS the allocation: a port another
  process holds is skipped rather than promised); this module only chooses
  candidates and remembers nothing the database does not.
- Ports come from ``--tcp-ports``: a range ``A-B`` (lowest free one not used
  by another socket), or ``0`` (let the OS choose; handy for tests that run
  several edges at once). The chosen port is stored with the socket, so a
  restart binds it again.
- Every node of an edge binds every tcp socket's port: the node whose API
  made the socket binds it first, the others when the change reaches them
  (``follow``, per changed socket, so a change costs the same whatever the
  total), and every node closes it when the socket goes.
"""

import logging

from dataclasses import dataclass
from typing import Optional

from .plane import DataPlane, DataPlaneError

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


class TcpPorts:
    def __init__(self, plane: DataPlane, ports: PortRange, used: callable):
        self._plane = plane
        self.ports = ports
        self._used = used          # () -> set of ports stored for sockets
        self._of_socket: dict = {}  # socket_id -> the port bound for it here
        self._bound: set = set()

    async def open_new(self) -> int:
        """Bind a free public port for a new tcp socket and return it."""
        if self.ports.os_chooses:
            port = await self._plane.open_tcp(0)
            self._bound.add(port)
            return port
        used = self._used()
        for port in range(self.ports.first, self.ports.last + 1):
            if port in used or port in self._bound:
                continue
            try:
                port = await self._plane.open_tcp(port)
            except DataPlaneError:
                continue
            self._bound.add(port)
            return port
        raise NoFreeTcpPort()

    async def close(self, port: Optional[int]) -> None:
        if port is not None:
            self._bound.discard(port)
            await self._plane.close_tcp(port)

    async def follow(self, socket_id: str, port: Optional[int]) -> None:
        """The socket now has public ``port`` (None: it has none, or is gone): bind or close here."""
        old = self._of_socket.pop(socket_id, None)
        if port:
            self._of_socket[socket_id] = port
        if old and old != port:
            await self.close(old)
        if port and port not in self._bound:
            try:
                await self._plane.open_tcp(port)
                self._bound.add(port)
            except DataPlaneError as exc:
                log.error("tcp port %d of socket %s cannot be bound on this node: %s",
                          port, socket_id, exc)

    def started(self, socket_id: str, port: Optional[int]) -> None:
        """The data plane bound ``port`` for the socket when it started (edge.plane)."""
        if port:
            self._of_socket[socket_id] = port
            self._bound.add(port)
