"""This node's picture of the edge: accounts, sockets, tunnels, in memory, kept by edge.feed.

Why it is shaped this way:
- The store is never in a request's path: the API reads (accounts at login,
  a token's user, sockets and tunnels) come from here, and so does the data
  plane's state, so a node keeps serving everything it knew while its store
  is away. Only writes go to the store.
- Every record is indexed the ways it is looked up (user by id, email and
  name; socket by id, account, name and dnsname; tunnels by socket), so a
  change and a lookup cost the same with 10 sockets or 10,000.
- ``apply`` takes one change-log row and returns what the data plane must
  learn (edge.plane's deltas): the data plane gets the changed records, never
  the whole state.
"""

from dataclasses import dataclass, field
from typing import Optional

from .store import Change, Socket, Tunnel, User
from .store.model import from_json


@dataclass
class Delta:
    """What changed, as the data plane sees it (edge.plane.delta_json)."""
    users: dict = field(default_factory=dict)        # user_id -> User or None (gone)
    sockets: dict = field(default_factory=dict)      # socket_id -> Socket or None (gone)

    def __bool__(self) -> bool:
        return bool(self.users or self.sockets)

    def merge(self, other: "Delta") -> None:
        self.users.update(other.users)
        self.sockets.update(other.sockets)


class State:
    def __init__(self):
        self.seq = 0
        self.users: dict = {}
        self._user_by_email: dict = {}
        self._user_by_name: dict = {}
        self.sockets: dict = {}                       # socket_id -> Socket (insertion: created order)
        self._sockets_of: dict = {}                   # user_id -> {socket_id: Socket}
        self._by_dns: dict = {}
        self.tunnels: dict = {}                       # tunnel_id -> Tunnel
        self._tunnels_of: dict = {}                   # socket_id -> {tunnel_id: Tunnel}
        self._tunnel_by_port: dict = {}               # local_port -> Tunnel
        self._node_load: dict = {}                    # node -> tunnels placed there

    # -- loading and applying --------------------------------------------------
    def load(self, seq: int, users: list, sockets: list, tunnels: list) -> None:
        self.__init__()
        self.seq = seq
        for u in users:
            self._put_user(u)
        for s in sockets:
            self._put_socket(s)
        for t in tunnels:
            self._put_tunnel(t)

    def apply(self, change: Change) -> Delta:
        """Apply one change-log row; what the data plane must learn from it."""
        self.seq = max(self.seq, change.seq)
        record = from_json(change.kind, change.data) if change.data is not None else None
        delta = Delta()
        if change.kind == "user":
            self._drop_user(change.key)
            if record is not None:
                self._put_user(record)
            delta.users[change.key] = record
        elif change.kind == "socket":
            self._drop_socket(change.key)
            if record is not None:
                self._put_socket(record)
            delta.sockets[change.key] = record
        elif change.kind == "tunnel":
            old = self.tunnels.get(change.key)
            self._drop_tunnel(change.key)
            if record is not None:
                self._put_tunnel(record)
            for socket_id in {t.socket_id for t in (old, record) if t is not None}:
                delta.sockets[socket_id] = self.sockets.get(socket_id)
        return delta

    def _put_user(self, u: User) -> None:
        self.users[u.user_id] = u
        self._user_by_email[u.email] = u
        self._user_by_name[u.user_name] = u

    def _drop_user(self, user_id: str) -> None:
        u = self.users.pop(user_id, None)
        if u is not None:
            self._user_by_email.pop(u.email, None)
            self._user_by_name.pop(u.user_name, None)

    def _put_socket(self, s: Socket) -> None:
        self.sockets[s.socket_id] = s
        self._sockets_of.setdefault(s.user_id, {})[s.socket_id] = s
        self._by_dns[s.dnsname.lower()] = s
        self._tunnels_of.setdefault(s.socket_id, {})

    def _drop_socket(self, socket_id: str) -> None:
        s = self.sockets.pop(socket_id, None)
        if s is None:
            return
        mine = self._sockets_of.get(s.user_id, {})
        mine.pop(socket_id, None)
        if not mine:
            self._sockets_of.pop(s.user_id, None)
        self._by_dns.pop(s.dnsname.lower(), None)

    def _put_tunnel(self, t: Tunnel) -> None:
        self.tunnels[t.tunnel_id] = t
        self._tunnels_of.setdefault(t.socket_id, {})[t.tunnel_id] = t
        self._tunnel_by_port[t.local_port] = t
        self._node_load[t.node] = self._node_load.get(t.node, 0) + 1

    def _drop_tunnel(self, tunnel_id: str) -> None:
        t = self.tunnels.pop(tunnel_id, None)
        if t is None:
            return
        self._node_load[t.node] -= 1
        if self._tunnel_by_port.get(t.local_port) is t:
            del self._tunnel_by_port[t.local_port]
        of = self._tunnels_of.get(t.socket_id, {})
        of.pop(tunnel_id, None)
        if not of and t.socket_id not in self.sockets:
            self._tunnels_of.pop(t.socket_id, None)

    # -- lookups (the API's reads) -----------------------------------------------
    def user_by_id(self, user_id: str) -> Optional[User]:
        return self.users.get(user_id)

    def user_by_email(self, email: str) -> Optional[User]:
        return self._user_by_email.get(email)

    def socket(self, socket_id: str, user_id: str) -> Optional[Socket]:
        """The socket if it exists AND belongs to user_id, else None."""
        s = self.sockets.get(socket_id)
        return s if s is not None and s.user_id == user_id else None

    def sockets_of(self, user_id: str) -> list:
        return sorted(self._sockets_of.get(user_id, {}).values(),
                      key=lambda s: (s.created, s.socket_id))

    def count_sockets_of_user(self, user_id: str) -> int:
        return len(self._sockets_of.get(user_id, {}))

    def count_tcp_ports_of_user(self, user_id: str) -> int:
        """tcp sockets of the account: each holds a public port of --tcp-ports."""
        return sum(1 for s in self._sockets_of.get(user_id, {}).values() if s.tcp_port)

    def count_tunnels_of_user(self, user_id: str) -> int:
        return sum(len(self._tunnels_of.get(sid, {})) for sid in self._sockets_of.get(user_id, {}))

    def socket_by_name(self, user_id: str, name: str) -> Optional[Socket]:
        found = [s for s in self.sockets_of(user_id) if s.name == name]
        return found[0] if found else None

    def dnsname_taken(self, dnsname: str) -> bool:
        return dnsname.lower() in self._by_dns

    def tunnels_of(self, socket_id: str) -> list:
        return sorted(self._tunnels_of.get(socket_id, {}).values(), key=lambda t: t.local_port)

    def tunnel(self, socket_id: str, tunnel_id: str) -> Optional[Tunnel]:
        t = self.tunnels.get(tunnel_id)
        return t if t is not None and t.socket_id == socket_id else None

    def tunnel_by_port(self, local_port: int) -> Optional[Tunnel]:
        return self._tunnel_by_port.get(local_port)

    def used_tcp_ports(self) -> set:
        return {s.tcp_port for s in self.sockets.values() if s.tcp_port}

    def node_load(self) -> dict:
        """node -> number of tunnels placed on it (placement's tie-breaker)."""
        return {n: c for n, c in self._node_load.items() if c > 0}

    def tunnels_on(self, nodes: set) -> list:
        return [t for t in self.tunnels.values() if t.node in nodes]
