"""SQLite state of the edge: accounts, sockets, tunnels.

Why it is shaped this way:
- The edge is one process with one event loop, and every query here is a
  single indexed lookup or a small write, so the calls are synchronous on the
  loop thread: no locks, no races between "check" and "write" (nothing else
  runs in between), and no thread pool to reason about.
- Lookups that take an owner (``user_id``) return None for another account's
  rows, so the API cannot leak that an id exists.
- ``local_port`` numbers come first from a counter that only grows; once the
  range is used up, a deleted tunnel's port is handed out again, but only
  after a quarantine (``released`` table, oldest first), so a stale ssh
  client of a deleted tunnel does not land on somebody else's socket in the
  meantime, and churn can never use up the range for good. Each tunnel
  creation is logged per account (``creations``) for the churn quota.
- WAL journal so the test-suite can read the database while the edge writes.
"""

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

FIRST_LOCAL_PORT = 10000
LAST_LOCAL_PORT = 65535

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    sshkey TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sockets (
    socket_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    name TEXT NOT NULL,
    dnsname TEXT NOT NULL UNIQUE,
    socket_type TEXT NOT NULL,
    tcp_port INTEGER UNIQUE,
    protected_socket INTEGER NOT NULL,
    protected_username TEXT NOT NULL,
    protected_password_hash TEXT NOT NULL,
    cloud_authentication_enabled INTEGER NOT NULL,
    allowed_addresses TEXT NOT NULL,
    allowed_domains TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sockets_user ON sockets(user_id);
CREATE TABLE IF NOT EXISTS tunnels (
    tunnel_id TEXT PRIMARY KEY,
    socket_id TEXT NOT NULL REFERENCES sockets(socket_id) ON DELETE CASCADE,
    local_port INTEGER NOT NULL UNIQUE,
    created REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tunnels_socket ON tunnels(socket_id);
CREATE TABLE IF NOT EXISTS released (local_port INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS released_at ON released(at);
CREATE TABLE IF NOT EXISTS creations (user_id TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS creations_user ON creations(user_id, at);
CREATE TABLE IF NOT EXISTS used_invites (
    token_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class DuplicateEmail(Exception):
    """An account with this email exists already."""


class NoFreeLocalPort(Exception):
    """Every local_port number is in use or in quarantine."""


class InviteUsed(Exception):
    """This invite token made an account already (tokens are single-use)."""


def _invite_key(token: str) -> str:
    """What is stored of a used invite token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class User:
    user_id: str
    user_name: str
    name: str
    email: str
    password_hash: str
    sshkey: str


@dataclass
class Tunnel:
    tunnel_id: str
    socket_id: str
    local_port: int
    owner: str = ""             # optional, the client's word for whose tunnel it is (edge/README.md)


@dataclass
class Socket:
    socket_id: str
    user_id: str
    name: str
    dnsname: str
    socket_type: str
    tcp_port: Optional[int] = None
    protected_socket: bool = False
    protected_username: str = ""
    protected_password_hash: str = ""
    cloud_authentication_enabled: bool = False
    allowed_addresses: list = field(default_factory=list)
    allowed_domains: list = field(default_factory=list)


class Store:
    """All reads and writes of the edge's SQLite database."""

    def __init__(self, path: Path, local_ports: tuple = (FIRST_LOCAL_PORT, LAST_LOCAL_PORT),
                 quarantine: float = 3600.0):
        self._first, self._last = local_ports
        self._quarantine = quarantine
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(tunnels)")}
        if "owner" not in columns:      # a database from before tunnel owners
            self._db.execute("ALTER TABLE tunnels ADD COLUMN owner TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self._db.close()

    def _tx(self):
        """A write transaction: ``with self._tx(): ...`` commits or rolls back."""
        return _Transaction(self._db)

    # -- accounts -------------------------------------------------------
    def add_user(self, user: User, invite_token: str = "") -> None:
        """Insert an account; with invite_token, also spend that token (one transaction:
        the token is spent only if the account is made, and only once)."""
        with self._tx():
            if invite_token:
                if self.invite_used(invite_token):
                    raise InviteUsed()
                self._db.execute("INSERT INTO used_invites VALUES (?,?,?)",
                                 (_invite_key(invite_token), user.user_id, time.time()))
            try:
                self._db.execute(
                    "INSERT INTO users VALUES (?,?,?,?,?,?,?)",
                    (user.user_id, user.user_name, user.name, user.email,
                     user.password_hash, user.sshkey, time.time()))
            except sqlite3.IntegrityError as exc:
                raise DuplicateEmail(user.email) from exc

    def invite_used(self, invite_token: str) -> bool:
        return self._db.execute("SELECT 1 FROM used_invites WHERE token_sha256 = ?",
                                (_invite_key(invite_token),)).fetchone() is not None

    def _user(self, column: str, value: str) -> Optional[User]:
        row = self._db.execute(
            f"SELECT user_id, user_name, name, email, password_hash, sshkey "
            f"FROM users WHERE {column} = ?", (value,)).fetchone()
        return User(**dict(row)) if row else None

    def user_by_id(self, user_id: str) -> Optional[User]:
        return self._user("user_id", user_id)

    def user_by_email(self, email: str) -> Optional[User]:
        return self._user("email", email)

    def user_by_name(self, user_name: str) -> Optional[User]:
        return self._user("user_name", user_name)

    # -- sockets --------------------------------------------------------
    def dnsname_taken(self, dnsname: str) -> bool:
        return self._db.execute("SELECT 1 FROM sockets WHERE dnsname = ?",
                                (dnsname,)).fetchone() is not None

    def add_socket(self, sock: Socket, tunnel_ids: list, owner: str = "") -> list:
        """Insert a socket and its first tunnels (all of `owner`) in one transaction."""
        with self._tx():
            self._db.execute(
                "INSERT INTO sockets VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (sock.socket_id, sock.user_id, sock.name, sock.dnsname,
                 sock.socket_type, sock.tcp_port, int(sock.protected_socket),
                 sock.protected_username, sock.protected_password_hash,
                 int(sock.cloud_authentication_enabled),
                 json.dumps(sock.allowed_addresses),
                 json.dumps(sock.allowed_domains), time.time()))
            return [self._insert_tunnel(sock.socket_id, tid, owner) for tid in tunnel_ids]

    def _sockets(self, where: str, args: tuple) -> list:
        rows = self._db.execute(
            f"SELECT * FROM sockets WHERE {where} ORDER BY created, socket_id",
            args).fetchall()
        return [_socket_from_row(r) for r in rows]

    def socket(self, socket_id: str, user_id: str) -> Optional[Socket]:
        """The socket if it exists AND belongs to user_id, else None."""
        found = self._sockets("socket_id = ? AND user_id = ?", (socket_id, user_id))
        return found[0] if found else None

    def sockets_of(self, user_id: str) -> list:
        return self._sockets("user_id = ?", (user_id,))

    def socket_by_name(self, user_id: str, name: str) -> Optional[Socket]:
        """The account's oldest socket with exactly this name (for unique_name creates)."""
        found = self._sockets("user_id = ? AND name = ?", (user_id, name))
        return found[0] if found else None

    def set_protection(self, socket_id: str, protected: bool, username: str, password_hash: str) -> None:
        with self._tx():
            self._db.execute("UPDATE sockets SET protected_socket = ?, protected_username = ?, "
                             "protected_password_hash = ? WHERE socket_id = ?",
                             (int(protected), username, password_hash, socket_id))

    def socket_by_dnsname(self, dnsname: str) -> Optional[Socket]:
        found = self._sockets("dnsname = ?", (dnsname,))
        return found[0] if found else None

    def socket_by_tcp_port(self, port: int) -> Optional[Socket]:
        found = self._sockets("tcp_port = ?", (port,))
        return found[0] if found else None

    def tcp_sockets(self) -> list:
        return self._sockets("tcp_port IS NOT NULL", ())

    def used_tcp_ports(self) -> set:
        rows = self._db.execute(
            "SELECT tcp_port FROM sockets WHERE tcp_port IS NOT NULL").fetchall()
        return {r[0] for r in rows}

    def delete_socket(self, socket_id: str) -> list:
        """Delete a socket and its tunnels; returns the tunnels' local_ports."""
        with self._tx():
            ports = [t.local_port for t in self.tunnels_of(socket_id)]
            self._release(ports)
            self._db.execute("DELETE FROM tunnels WHERE socket_id = ?", (socket_id,))
            self._db.execute("DELETE FROM sockets WHERE socket_id = ?", (socket_id,))
        return ports

    # -- tunnels --------------------------------------------------------
    def _release(self, ports: list) -> None:
        now = time.time()
        self._db.executemany("INSERT OR REPLACE INTO released VALUES (?, ?)",
                             [(p, now) for p in ports])

    def _free_port(self) -> int:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = 'next_local_port'").fetchone()
        port = max(int(row[0]) if row else self._first, self._first)
        if port <= self._last:
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('next_local_port', ?)", (str(port + 1),))
            return port
        row = self._db.execute(
            "SELECT local_port FROM released WHERE at <= ? AND local_port BETWEEN ? AND ? "
            "ORDER BY at LIMIT 1",
            (time.time() - self._quarantine, self._first, self._last)).fetchone()
        if row is None:
            raise NoFreeLocalPort()
        self._db.execute("DELETE FROM released WHERE local_port = ?", (row[0],))
        return row[0]

    def _insert_tunnel(self, socket_id: str, tunnel_id: str, owner: str = "") -> Tunnel:
        port = self._free_port()
        now = time.time()
        self._db.execute("INSERT INTO tunnels (tunnel_id, socket_id, local_port, created, owner) "
                         "VALUES (?,?,?,?,?)", (tunnel_id, socket_id, port, now, owner))
        self._db.execute("INSERT INTO creations SELECT user_id, ? FROM sockets "
                         "WHERE socket_id = ?", (now, socket_id))
        return Tunnel(tunnel_id, socket_id, port, owner)

    def tunnels_created_since(self, user_id: str, since: float) -> int:
        self._db.execute("DELETE FROM creations WHERE at < ?", (time.time() - 86400,))
        return self._db.execute("SELECT COUNT(*) FROM creations WHERE user_id = ? AND at >= ?",
                                (user_id, since)).fetchone()[0]

    def count_tunnels_of_user(self, user_id: str) -> int:
        return self._db.execute(
            "SELECT COUNT(*) FROM tunnels t JOIN sockets s ON s.socket_id = t.socket_id "
            "WHERE s.user_id = ?", (user_id,)).fetchone()[0]

    def count_tcp_ports_of_user(self, user_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM sockets WHERE user_id = ? AND "
                                "tcp_port IS NOT NULL", (user_id,)).fetchone()[0]

    def count_sockets_of_user(self, user_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM sockets WHERE user_id = ?",
                                (user_id,)).fetchone()[0]

    def add_tunnel(self, socket_id: str, tunnel_id: str, owner: str = "") -> Tunnel:
        with self._tx():
            return self._insert_tunnel(socket_id, tunnel_id, owner)

    def tunnels_of(self, socket_id: str) -> list:
        rows = self._db.execute(
            "SELECT tunnel_id, socket_id, local_port, owner FROM tunnels "
            "WHERE socket_id = ? ORDER BY local_port", (socket_id,)).fetchall()
        return [Tunnel(**dict(r)) for r in rows]

    def tunnel(self, socket_id: str, tunnel_id: str) -> Optional[Tunnel]:
        row = self._db.execute(
            "SELECT tunnel_id, socket_id, local_port, owner FROM tunnels "
            "WHERE socket_id = ? AND tunnel_id = ?", (socket_id, tunnel_id)).fetchone()
        return Tunnel(**dict(row)) if row else None

    def owner_of_local_port(self, local_port: int) -> Optional[tuple]:
        """(user_id, socket dnsname) of the tunnel with this local_port, or None."""
        row = self._db.execute(
            "SELECT s.user_id, s.dnsname FROM tunnels t JOIN sockets s "
            "ON s.socket_id = t.socket_id WHERE t.local_port = ?",
            (local_port,)).fetchone()
        return (row[0], row[1]) if row else None

    def dataplane_state(self) -> dict:
        """Everything the data plane needs, as JSON-able data (see edge.plane)."""
        users = [{"user_id": r[0], "user_name": r[1], "sshkey": r[2]} for r in self._db.execute(
            "SELECT user_id, user_name, sshkey FROM users")]
        ports: dict = {}
        for socket_id, port in self._db.execute("SELECT socket_id, local_port FROM tunnels"):
            ports.setdefault(socket_id, []).append(port)
        sockets = []
        for s in self._sockets("1 = 1", ()):
            sockets.append({
                "socket_id": s.socket_id, "user_id": s.user_id, "dnsname": s.dnsname,
                "socket_type": s.socket_type, "tcp_port": s.tcp_port or 0,
                "protected_socket": s.protected_socket,
                "protected_username": s.protected_username,
                "protected_password_hash": s.protected_password_hash,
                "cloud_authentication_enabled": s.cloud_authentication_enabled,
                "local_ports": sorted(ports.get(s.socket_id, []))})
        return {"users": users, "sockets": sockets}

    def delete_tunnel(self, tunnel_id: str) -> None:
        with self._tx():
            self._release([r[0] for r in self._db.execute(
                "SELECT local_port FROM tunnels WHERE tunnel_id = ?", (tunnel_id,))])
            self._db.execute("DELETE FROM tunnels WHERE tunnel_id = ?", (tunnel_id,))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _socket_from_row(row: sqlite3.Row) -> Socket:
    return Socket(
        socket_id=row["socket_id"], user_id=row["user_id"], name=row["name"],
        dnsname=row["dnsname"], socket_type=row["socket_type"],
        tcp_port=row["tcp_port"], protected_socket=bool(row["protected_socket"]),
        protected_username=row["protected_username"],
        protected_password_hash=row["protected_password_hash"],
        cloud_authentication_enabled=bool(row["cloud_authentication_enabled"]),
        allowed_addresses=json.loads(row["allowed_addresses"]),
        allowed_domains=json.loads(row["allowed_domains"]))
