"""Registry of live reverse forwards: local_port -> the SSH connection serving it.

Why it is shaped this way:
- A tunnel's ``local_port`` is only a number in this design: the edge never
  binds it. When a client's ``tcpip-forward`` is accepted, sshd hands asyncssh
  a ``ForwardListener`` (an ``asyncssh.SSHListener`` that listens on nothing)
  and records the forward here. The public fronts look a socket's tunnels up
  here and open a ``forwarded-tcpip`` channel back to the client, exactly as
  sshd would for a connection to a bound port. No port clashes with the host,
  no port range to reserve, and a forward cannot outlive its SSH connection.
- asyncssh calls ``ForwardListener.close()`` when the client cancels the
  forward or the connection ends, which removes the entry. Removal is keyed
  on identity, so a late close of an old forward never removes a newer one.
- ``open_channel`` spreads NEW connections round-robin over a socket's
  connected tunnels and falls through to the next tunnel when one cannot
  open a channel (its client is going away, or its target refuses), so a
  dying tunnel costs visitors nothing while another one is up.
"""

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import asyncssh

log = logging.getLogger(__name__)

CHANNEL_OPEN_TIMEOUT = 10.0


@dataclass
class Forward:
    local_port: int
    listen_host: str      # as the client sent it; echoed back when opening channels
    user_name: str
    dnsname: str
    conn: asyncssh.SSHServerConnection
    since: float = field(default_factory=time.time)


class NoTunnel(Exception):
    """No connected tunnel of the socket could take the connection."""


class ForwardListener(asyncssh.SSHListener):
    """What sshd returns from server_requested: a listener bound to nothing."""

    def __init__(self, registry: "ForwardRegistry", forward: Forward):
        super().__init__()
        self._registry = registry
        self.forward = forward

    def get_port(self) -> int:
        return self.forward.local_port

    def close(self) -> None:
        self._registry.remove(self.forward)

    async def wait_closed(self) -> None:
        return None


class ForwardRegistry:
    def __init__(self):
        self._by_port: dict = {}
        self._turns: dict = {}   # socket_id -> itertools.count, for round-robin

    def claim(self, forward: Forward) -> Optional[ForwardListener]:
        """Register forward; None when its port is held by a live forward."""
        if forward.local_port in self._by_port:
            return None
        self._by_port[forward.local_port] = forward
        log.info("forward up: local_port=%d user=%s socket=%s",
                 forward.local_port, forward.user_name, forward.dnsname)
        return ForwardListener(self, forward)

    def remove(self, forward: Forward) -> None:
        if self._by_port.get(forward.local_port) is forward:
            del self._by_port[forward.local_port]
            log.info("forward down: local_port=%d user=%s socket=%s",
                     forward.local_port, forward.user_name, forward.dnsname)

    def all(self) -> list:
        return sorted(self._by_port.values(), key=lambda f: f.local_port)

    def of_connection(self, conn) -> list:
        return [f for f in self._by_port.values() if f.conn is conn]

    def drop(self, local_ports: list) -> None:
        """Forget these ports' forwards (their tunnels were deleted).

        A connection left serving nothing is closed, so the client's ssh
        exits and its supervisor notices the tunnel is gone.
        """
        conns = set()
        for port in local_ports:
            forward = self._by_port.get(port)
            if forward is not None:
                self.remove(forward)
                conns.add(forward.conn)
        for conn in conns:
            if not self.of_connection(conn):
                log.info("closing SSH session of %s: its tunnels were deleted",
                         conn.get_extra_info("username"))
                conn.close()

    def forget_socket(self, socket_id: str) -> None:
        self._turns.pop(socket_id, None)

    async def open_channel(self, socket_id: str, local_ports: list, peer: tuple):
        """(reader, writer) of a new channel to one of the socket's tunnels.

        Raises NoTunnel with a short human reason when none can be opened.
        """
        live = [self._by_port[p] for p in local_ports if p in self._by_port]
        if not live:
            raise NoTunnel("no tunnel of this socket is connected")
        turn = next(self._turns.setdefault(socket_id, itertools.count()))
        errors = []
        for i in range(len(live)):
            forward = live[(turn + i) % len(live)]
            try:
                reader, writer = await asyncio.wait_for(
                    forward.conn.open_connection(
                        forward.listen_host, forward.local_port, peer[0], peer[1]),
                    CHANNEL_OPEN_TIMEOUT)
                return reader, writer
            except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
                reason = getattr(exc, "reason", "") or type(exc).__name__
                log.info("tunnel local_port=%d could not open a channel: %s",
                         forward.local_port, reason)
                errors.append(reason)
        raise NoTunnel("tunnel could not reach its target: " + "; ".join(errors))
