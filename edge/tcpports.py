"""Public ports of ``tcp`` sockets: which number a new socket gets.

Why it is shaped this way:
- The data plane binds the port (binding IS the allocation: a port another
  process holds is skipped rather than promised); this module only chooses
  candidates and remembers nothing the database does not.
- Ports come from ``--tcp-ports``: a range ``A-B`` (lowest free one not used
  by another socket), or ``0`` (let the OS choose; handy for tests that run
  several edges at once). The chosen port is stored with the socket, so a
  restart binds it again.
"""

from dataclasses import dataclass
from typing import Optional

from .plane import DataPlane, DataPlaneError


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

    async def open_new(self) -> int:
        """Bind a free public port for a new tcp socket and return it."""
        if self.ports.os_chooses:
            return await self._plane.open_tcp(0)
        used = self._used()
        for port in range(self.ports.first, self.ports.last + 1):
            if port in used:
                continue
            try:
                return await self._plane.open_tcp(port)
            except DataPlaneError:
                continue
        raise NoFreeTcpPort()

    async def close(self, port: Optional[int]) -> None:
        if port is not None:
            await self._plane.close_tcp(port)
