"""Every read and write of the edge's store, once, for both backends (SQLite, PostgreSQL).

Why it is shaped this way:
- The logic (which rows, in which order, in one transaction) is written once
  against a tiny backend interface (``tx()`` gives ``execute``/``one``/``all``
  with ``?`` placeholders); edge.store.sqlite and edge.store.postgres only
  open connections, lock and map errors. Both speak the same SQL subset
  (``ON CONFLICT``, ``RETURNING``), so there is no second copy to drift.
- Every write transaction is serialised across the whole edge (SQLite:
  ``BEGIN IMMEDIATE``; PostgreSQL: one advisory transaction lock) and appends
  one row per changed record to ``changes`` with the whole record as JSON.
  Serialising makes the change log's sequence the commit order, so a node
  that read up to sequence N has seen every change up to N: catching up is
  ``seq > N``, never a scan. Writes are small and rare next to reads, which
  never take the lock. Each write returns the last sequence it wrote, so the
  API answers its client only once its own node has applied the change.
- ``local_port`` numbers come first from a counter that only grows; once the
  range is used up, a deleted tunnel's port is handed out again after a
  quarantine (``released``, oldest first), so a stale client of a deleted
  tunnel does not land on somebody else's socket meanwhile.
- Heartbeats and node ages use the store's clock, so nodes with skewed clocks
  still agree on who is alive.
"""

import hashlib
import json
import time
from typing import Callable, Optional

from . import model
from .model import (Change, DuplicateEmail, HostnameTaken, InviteUsed, LogTruncated, Node, NoFreeLocalPort,
                    Socket, Tunnel, User)

PRUNED_KEY = "changes_pruned_through"


class IntegrityError(Exception):
    """A constraint refused a write (the backends map their driver's error to this)."""


_SOCKET_COLUMNS = ("socket_id, user_id, name, dnsname, socket_type, tcp_port, protected_socket, "
                   "protected_username, protected_password_hash, cloud_authentication_enabled, "
                   "allowed_addresses, allowed_domains, created, routes, address, upstream_protocol, hostnames")
_TUNNEL_COLUMNS = "tunnel_id, socket_id, local_port, owner, node, backend"


def _socket(row: dict) -> Socket:
    return Socket(
        socket_id=row["socket_id"], user_id=row["user_id"], name=row["name"],
        dnsname=row["dnsname"], socket_type=row["socket_type"], tcp_port=row["tcp_port"],
        protected_socket=bool(row["protected_socket"]),
        protected_username=row["protected_username"],
        protected_password_hash=row["protected_password_hash"],
        cloud_authentication_enabled=bool(row["cloud_authentication_enabled"]),
        allowed_addresses=json.loads(row["allowed_addresses"]),
        allowed_domains=json.loads(row["allowed_domains"]), created=row["created"],
        routes=json.loads(row["routes"]) if row["routes"] else None, address=row["address"],
        upstream_protocol=row["upstream_protocol"], hostnames=json.loads(row["hostnames"] or "[]"))


def _routes_text(routes: Optional[dict]) -> str:
    return "" if routes is None else json.dumps(routes, sort_keys=True, separators=(",", ":"))


class SqlStore:
    """The store over one backend; every method is async (PostgreSQL never blocks the loop)."""

    def __init__(self, backend, local_ports: tuple = (model.FIRST_LOCAL_PORT, model.LAST_LOCAL_PORT),
                 quarantine: float = 3600.0):
        self._b = backend
        self._first, self._last = local_ports
        self._quarantine = quarantine

    @property
    def shared(self) -> bool:
        """True when other nodes may share this store (PostgreSQL)."""
        return self._b.shared

    @property
    def describe(self) -> str:
        return self._b.describe

    async def open(self) -> None:
        await self._b.open()

    async def close(self) -> None:
        await self._b.close()

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever another node may have written (LISTEN), and on reconnect."""
        self._b.on_change(callback)

    # -- the change log ---------------------------------------------------
    async def _log(self, tx, kind: str, key: str, record) -> int:
        data = None if record is None else json.dumps(model.to_json(record))
        row = await tx.one("INSERT INTO changes (at, kind, key, data) VALUES (?,?,?,?) RETURNING seq",
                           (time.time(), kind, key, data))
        tx.wrote = True
        return row["seq"]

    async def changes_since(self, seq: int, limit: int = 1000) -> list:
        async with self._b.read() as tx:
            pruned = await tx.one("SELECT value FROM meta WHERE key = ?", (PRUNED_KEY,))
            if pruned and seq < int(pruned["value"]):
                raise LogTruncated(seq)
            rows = await tx.all("SELECT seq, kind, key, data FROM changes WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", (seq, limit))
        return [Change(r["seq"], r["kind"], r["key"],
                       json.loads(r["data"]) if r["data"] is not None else None) for r in rows]

    async def load_all(self) -> tuple:
        """(seq, users, sockets, tunnels): everything, consistent with the log at seq."""
        async with self._b.tx() as tx:       # the writers' lock: no write in between
            row = await tx.one("SELECT MAX(seq) AS seq FROM changes", ())
            pruned = await tx.one("SELECT value FROM meta WHERE key = ?", (PRUNED_KEY,))
            seq = max(row["seq"] or 0, int(pruned["value"]) if pruned else 0)
            users = [User(**r) for r in await tx.all(
                "SELECT user_id, user_name, name, email, password_hash, sshkey FROM users", ())]
            sockets = [_socket(r) for r in await tx.all(
                "SELECT {} FROM sockets ORDER BY created, socket_id".format(_SOCKET_COLUMNS), ())]
            tunnels = [Tunnel(**r) for r in await tx.all(
                "SELECT {} FROM tunnels ORDER BY local_port".format(_TUNNEL_COLUMNS), ())]
        return seq, users, sockets, tunnels

    async def prune(self, older_than: float) -> int:
        """Forget changes older than ``older_than`` (unix time); a node further behind reloads."""
        async with self._b.tx() as tx:
            row = await tx.one("SELECT MAX(seq) AS seq FROM changes WHERE at < ?", (older_than,))
            through = row["seq"]
            if through is None:
                return 0
            await tx.execute("DELETE FROM changes WHERE seq <= ?", (through,))
            await tx.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                             "SET value = excluded.value", (PRUNED_KEY, str(through)))
            await tx.execute("DELETE FROM creations WHERE at < ?", (time.time() - 86400,))
        return through

    # -- accounts -----------------------------------------------------------
    async def add_user(self, user: User, invite_token: str = "") -> int:
        """Insert an account; with invite_token, also spend that token, in the same
        transaction (writes are serialised across the edge: one account per token,
        even from two nodes at once). Only the token's SHA-256 is stored."""
        try:
            async with self._b.tx() as tx:
                if invite_token:
                    key = hashlib.sha256(invite_token.encode()).hexdigest()
                    if await tx.one("SELECT 1 AS spent FROM used_invites WHERE token_sha256 = ?",
                                    (key,)):
                        raise InviteUsed()
                    await tx.execute("INSERT INTO used_invites VALUES (?,?,?)",
                                     (key, user.user_id, time.time()))
                await tx.execute("INSERT INTO users VALUES (?,?,?,?,?,?,?)",
                                 (user.user_id, user.user_name, user.name, user.email,
                                  user.password_hash, user.sshkey, time.time()))
                return await self._log(tx, "user", user.user_id, user)
        except IntegrityError as exc:
            raise DuplicateEmail(user.email) from exc

    # -- sockets ------------------------------------------------------------
    async def add_socket(self, sock: Socket, tunnels: list, unique: bool = False) -> tuple:
        """Insert a socket and its first tunnels in one transaction: (socket, tunnels, seq).

        ``tunnels`` are Tunnel records whose local_port is chosen here. With ``unique``,
        the account's existing socket of that name is returned instead (and no tunnel
        made): the check and the insert are one transaction under the writers' lock, so
        two nodes asked at the same moment never both insert."""
        async with self._b.tx() as tx:
            if unique:
                row = await tx.one("SELECT {} FROM sockets WHERE user_id = ? AND name = ? "
                                   "ORDER BY created, socket_id LIMIT 1".format(_SOCKET_COLUMNS),
                                   (sock.user_id, sock.name))
                if row is not None:
                    return _socket(row), [], 0
            sock.created = time.time()
            await tx.execute(
                "INSERT INTO sockets ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)".format(_SOCKET_COLUMNS),
                (sock.socket_id, sock.user_id, sock.name, sock.dnsname, sock.socket_type,
                 sock.tcp_port, sock.protected_socket, sock.protected_username,
                 sock.protected_password_hash, sock.cloud_authentication_enabled,
                 json.dumps(sock.allowed_addresses), json.dumps(sock.allowed_domains),
                 sock.created, _routes_text(sock.routes), sock.address, sock.upstream_protocol,
                 json.dumps(sock.hostnames)))
            seq = await self._log(tx, "socket", sock.socket_id, sock)
            made = []
            for t in tunnels:
                tunnel, seq = await self._insert_tunnel(tx, sock, t)
                made.append(tunnel)
            return sock, made, seq

    async def dnsname_taken(self, dnsname: str) -> bool:
        async with self._b.read() as tx:
            return await tx.one("SELECT 1 AS x FROM sockets WHERE dnsname = ?", (dnsname,)) is not None

    async def set_protection(self, sock: Socket, protected: bool, username: str,
                             password_hash: str) -> int:
        async with self._b.tx() as tx:
            await tx.execute("UPDATE sockets SET protected_socket = ?, protected_username = ?, "
                             "protected_password_hash = ? WHERE socket_id = ?",
                             (protected, username, password_hash, sock.socket_id))
            row = await tx.one("SELECT {} FROM sockets WHERE socket_id = ?".format(_SOCKET_COLUMNS),
                               (sock.socket_id,))
            return await self._log(tx, "socket", sock.socket_id, _socket(row) if row else None)

    async def set_allowed(self, sock: Socket, addresses: list, domains: list) -> int:
        """A cloud-auth socket's allowed e-mail addresses and domains, in place."""
        async with self._b.tx() as tx:
            await tx.execute("UPDATE sockets SET allowed_addresses = ?, allowed_domains = ? WHERE socket_id = ?",
                             (json.dumps(list(addresses)), json.dumps(list(domains)), sock.socket_id))
            row = await tx.one("SELECT {} FROM sockets WHERE socket_id = ?".format(_SOCKET_COLUMNS),
                               (sock.socket_id,))
            return await self._log(tx, "socket", sock.socket_id, _socket(row) if row else None)

    async def set_routes(self, sock: Socket, routes: Optional[dict]) -> int:
        """Replace a socket's route table (None: none); the change log carries the whole socket."""
        async with self._b.tx() as tx:
            await tx.execute("UPDATE sockets SET routes = ? WHERE socket_id = ?",
                             (_routes_text(routes), sock.socket_id))
            row = await tx.one("SELECT {} FROM sockets WHERE socket_id = ?".format(_SOCKET_COLUMNS),
                               (sock.socket_id,))
            return await self._log(tx, "socket", sock.socket_id, _socket(row) if row else None)

    async def set_hostnames(self, sock: Socket, claims: list) -> int:
        """Replace a socket's custom names (dicts of edge.hostnames.Claim). A name another account's
        socket holds verified raises HostnameTaken, and so does a name verified here while another
        account's socket holds it verified: the check and the write are one transaction under the
        writers' lock, so two accounts proving one name on two nodes at once cannot both win."""
        async with self._b.tx() as tx:
            for claim in claims:
                needle = '%"hostname": {}%'.format(json.dumps(claim["hostname"]))
                rows = await tx.all("SELECT user_id, hostnames FROM sockets WHERE user_id <> ? "
                                    "AND hostnames LIKE ?", (sock.user_id, needle))
                for row in rows:
                    if any(c["hostname"] == claim["hostname"] and c.get("verified")
                           for c in json.loads(row["hostnames"])):
                        raise HostnameTaken(claim["hostname"])
            await tx.execute("UPDATE sockets SET hostnames = ? WHERE socket_id = ?",
                             (json.dumps(claims), sock.socket_id))
            row = await tx.one("SELECT {} FROM sockets WHERE socket_id = ?".format(_SOCKET_COLUMNS),
                               (sock.socket_id,))
            return await self._log(tx, "socket", sock.socket_id, _socket(row) if row else None)

    async def set_upstream_protocol(self, sock: Socket, protocol: str) -> int:
        async with self._b.tx() as tx:
            await tx.execute("UPDATE sockets SET upstream_protocol = ? WHERE socket_id = ?",
                             (protocol, sock.socket_id))
            row = await tx.one("SELECT {} FROM sockets WHERE socket_id = ?".format(_SOCKET_COLUMNS),
                               (sock.socket_id,))
            return await self._log(tx, "socket", sock.socket_id, _socket(row) if row else None)

    async def delete_socket(self, socket_id: str) -> int:
        """Delete a socket and its tunnels (their ports go to quarantine)."""
        async with self._b.tx() as tx:
            rows = await tx.all("SELECT tunnel_id, local_port FROM tunnels WHERE socket_id = ?",
                                (socket_id,))
            await self._release(tx, [r["local_port"] for r in rows])
            await tx.execute("DELETE FROM tunnels WHERE socket_id = ?", (socket_id,))
            await tx.execute("DELETE FROM sockets WHERE socket_id = ?", (socket_id,))
            for r in rows:
                await self._log(tx, "tunnel", r["tunnel_id"], None)
            return await self._log(tx, "socket", socket_id, None)

    # -- tunnels ------------------------------------------------------------
    async def _release(self, tx, ports: list) -> None:
        now = time.time()
        for p in ports:
            await tx.execute("INSERT INTO released VALUES (?, ?) ON CONFLICT(local_port) "
                             "DO UPDATE SET at = excluded.at", (p, now))

    async def _free_port(self, tx) -> int:
        row = await tx.one("SELECT value FROM meta WHERE key = 'next_local_port'", ())
        port = max(int(row["value"]) if row else self._first, self._first)
        if port <= self._last:
            await tx.execute("INSERT INTO meta VALUES ('next_local_port', ?) ON CONFLICT(key) "
                             "DO UPDATE SET value = excluded.value", (str(port + 1),))
            return port
        row = await tx.one(
            "SELECT local_port FROM released WHERE at <= ? AND local_port BETWEEN ? AND ? "
            "ORDER BY at LIMIT 1", (time.time() - self._quarantine, self._first, self._last))
        if row is None:
            raise NoFreeLocalPort()
        await tx.execute("DELETE FROM released WHERE local_port = ?", (row["local_port"],))
        return row["local_port"]

    async def _insert_tunnel(self, tx, sock: Socket, t: Tunnel) -> tuple:
        t.socket_id = sock.socket_id
        t.local_port = await self._free_port(tx)
        now = time.time()
        await tx.execute("INSERT INTO tunnels (tunnel_id, socket_id, local_port, created, owner, node, backend) "
                         "VALUES (?,?,?,?,?,?,?)",
                         (t.tunnel_id, t.socket_id, t.local_port, now, t.owner, t.node, t.backend))
        await tx.execute("INSERT INTO creations VALUES (?, ?)", (sock.user_id, now))
        return t, await self._log(tx, "tunnel", t.tunnel_id, t)

    async def add_tunnel(self, sock: Socket, tunnel: Tunnel,
                         place: Optional[Callable[[list], str]] = None) -> tuple:
        """(tunnel, seq). ``place(nodes of the socket's other tunnels)`` picks its node,
        read inside the transaction so two tunnels made at once still go to distinct nodes."""
        async with self._b.tx() as tx:
            if place is not None:
                rows = await tx.all("SELECT node FROM tunnels WHERE socket_id = ?", (sock.socket_id,))
                tunnel.node = place([r["node"] for r in rows])
            return await self._insert_tunnel(tx, sock, tunnel)

    async def delete_tunnel(self, tunnel_id: str) -> int:
        async with self._b.tx() as tx:
            rows = await tx.all("SELECT local_port FROM tunnels WHERE tunnel_id = ?", (tunnel_id,))
            await self._release(tx, [r["local_port"] for r in rows])
            await tx.execute("DELETE FROM tunnels WHERE tunnel_id = ?", (tunnel_id,))
            return await self._log(tx, "tunnel", tunnel_id, None)

    async def move_tunnels(self, off: set, place: Callable[[Tunnel, list], Optional[str]]) -> int:
        """Re-place every tunnel on a node in ``off`` (dead nodes): ``place(tunnel, nodes of
        its socket's other tunnels)`` says where. Returns the last seq (0: nothing moved).
        Idempotent: nodes that find the same dead node at once move each tunnel once."""
        seq = 0
        if not off:
            return 0
        async with self._b.tx() as tx:
            marks = ",".join("?" * len(off))
            rows = await tx.all("SELECT {} FROM tunnels WHERE node IN ({}) ORDER BY local_port"
                                .format(_TUNNEL_COLUMNS, marks), tuple(off))
            for r in rows:
                tunnel = Tunnel(**r)
                others = await tx.all("SELECT node FROM tunnels WHERE socket_id = ? AND tunnel_id <> ?",
                                      (tunnel.socket_id, tunnel.tunnel_id))
                node = place(tunnel, [o["node"] for o in others])
                if node is None or node == tunnel.node:
                    continue
                tunnel.node = node
                await tx.execute("UPDATE tunnels SET node = ? WHERE tunnel_id = ?", (node, tunnel.tunnel_id))
                seq = await self._log(tx, "tunnel", tunnel.tunnel_id, tunnel)
        return seq

    async def set_tunnel_node(self, tunnel: Tunnel, node: str) -> int:
        """Record that ``tunnel`` is served by ``node`` (its client connected there)."""
        async with self._b.tx() as tx:
            row = await tx.one("SELECT {} FROM tunnels WHERE tunnel_id = ?".format(_TUNNEL_COLUMNS),
                               (tunnel.tunnel_id,))
            if row is None or row["node"] == node:
                return 0
            await tx.execute("UPDATE tunnels SET node = ? WHERE tunnel_id = ?", (node, tunnel.tunnel_id))
            return await self._log(tx, "tunnel", tunnel.tunnel_id, Tunnel(**dict(row, node=node)))

    async def tunnels_created_since(self, user_id: str, since: float) -> int:
        async with self._b.read() as tx:
            row = await tx.one("SELECT COUNT(*) AS n FROM creations WHERE user_id = ? AND at >= ?",
                               (user_id, since))
        return row["n"]

    # -- shared settings and membership ----------------------------------------
    async def meta_setdefault(self, values: dict) -> dict:
        """The stored values of ``values``' keys, storing the given ones first where there are
        none, all in one transaction (a group stored by one node wins whole)."""
        async with self._b.tx() as tx:
            out = {}
            for key, value in values.items():
                await tx.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
                                 (key, value))
                out[key] = (await tx.one("SELECT value FROM meta WHERE key = ?", (key,)))["value"]
            return out

    async def meta_put(self, key: str, value: str) -> None:
        async with self._b.tx() as tx:
            await tx.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = excluded.value", (key, value))

    async def meta_swap(self, key: str, old: Optional[str], new: Optional[str]) -> bool:
        """Set ``key`` to ``new`` (None: delete it) only if it holds ``old`` (None: absent);
        whether it did. One node at a time wins (the zone's certificate order lock)."""
        async with self._b.tx() as tx:
            row = await tx.one("SELECT value FROM meta WHERE key = ?", (key,))
            if (row["value"] if row else None) != old:
                return False
            if new is None:
                await tx.execute("DELETE FROM meta WHERE key = ?", (key,))
            elif row is None:
                await tx.execute("INSERT INTO meta VALUES (?, ?)", (key, new))
            else:
                await tx.execute("UPDATE meta SET value = ? WHERE key = ?", (new, key))
            return True

    async def meta_get(self, key: str) -> Optional[str]:
        async with self._b.read() as tx:
            row = await tx.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else None

    async def heartbeat(self, node: Node) -> None:
        async with self._b.read() as tx:     # one upsert: no change-log row, no writers' lock
            await tx.execute(
                "INSERT INTO nodes (name, tunnel_server, link, api, addresses, challenge, seen) "
                "VALUES (?, ?, ?, ?, ?, ?, {now}) ON CONFLICT(name) DO UPDATE SET "
                "tunnel_server = excluded.tunnel_server, link = excluded.link, api = excluded.api, "
                "addresses = excluded.addresses, challenge = excluded.challenge, "
                "seen = excluded.seen".format(now=self._b.now_sql),
                (node.name, node.tunnel_server, node.link, node.api, node.addresses, node.challenge))

    async def nodes(self) -> list:
        async with self._b.read() as tx:
            rows = await tx.all("SELECT name, tunnel_server, link, api, addresses, challenge, {now} - seen AS age "
                                "FROM nodes ORDER BY name".format(now=self._b.now_sql), ())
        return [Node(**r) for r in rows]

    async def leave(self, name: str) -> None:
        """A node that stops cleanly leaves at once (its tunnels move without waiting)."""
        async with self._b.read() as tx:
            await tx.execute("DELETE FROM nodes WHERE name = ?", (name,))
