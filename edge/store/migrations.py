"""The store's schema as numbered migrations, one list for both backends.

Why it is shaped this way:
- A database records the migrations it has (``schema_version``); at start the
  edge applies the missing ones in order, each in its own transaction with its
  row in ``schema_version``, so a crash half-way leaves a consistent version
  and the next start goes on from there. Nodes of one PostgreSQL edge that
  start together take an advisory lock first (edge.store.postgres): one
  migrates, the others then find nothing to do.
- Each migration is written once per dialect, side by side, so the two schemas
  cannot drift apart unnoticed; the differences are only types (BOOLEAN and
  DOUBLE PRECISION in PostgreSQL, INTEGER and REAL in SQLite) and how the
  change log's sequence is made (BIGSERIAL / INTEGER PRIMARY KEY).
- Migration 1 is the schema of the single-node edge before migrations
  existed, with IF NOT EXISTS, so an existing edge.sqlite3 is adopted as it is.
- A migration never edits an earlier one: a new column or table is a new
  number.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str

    def statements(self, dialect: str) -> list:
        text = self.sqlite if dialect == "sqlite" else self.postgres
        return [s.strip() for s in text.split(";") if s.strip()]


_V1_SQLITE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, user_name TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, sshkey TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sockets (
    socket_id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(user_id),
    name TEXT NOT NULL, dnsname TEXT NOT NULL UNIQUE, socket_type TEXT NOT NULL,
    tcp_port INTEGER UNIQUE, protected_socket INTEGER NOT NULL,
    protected_username TEXT NOT NULL, protected_password_hash TEXT NOT NULL,
    cloud_authentication_enabled INTEGER NOT NULL, allowed_addresses TEXT NOT NULL,
    allowed_domains TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sockets_user ON sockets(user_id);
CREATE TABLE IF NOT EXISTS tunnels (
    tunnel_id TEXT PRIMARY KEY,
    socket_id TEXT NOT NULL REFERENCES sockets(socket_id) ON DELETE CASCADE,
    local_port INTEGER NOT NULL UNIQUE, created REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS tunnels_socket ON tunnels(socket_id);
CREATE TABLE IF NOT EXISTS released (local_port INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS released_at ON released(at);
CREATE TABLE IF NOT EXISTS creations (user_id TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS creations_user ON creations(user_id, at)
"""

_V1_POSTGRES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY, user_name TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, sshkey TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL);
CREATE TABLE sockets (
    socket_id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(user_id),
    name TEXT NOT NULL, dnsname TEXT NOT NULL UNIQUE, socket_type TEXT NOT NULL,
    tcp_port INTEGER UNIQUE, protected_socket BOOLEAN NOT NULL,
    protected_username TEXT NOT NULL, protected_password_hash TEXT NOT NULL,
    cloud_authentication_enabled BOOLEAN NOT NULL, allowed_addresses TEXT NOT NULL,
    allowed_domains TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE INDEX sockets_user ON sockets(user_id);
CREATE TABLE tunnels (
    tunnel_id TEXT PRIMARY KEY,
    socket_id TEXT NOT NULL REFERENCES sockets(socket_id) ON DELETE CASCADE,
    local_port INTEGER NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL,
    owner TEXT NOT NULL DEFAULT '');
CREATE INDEX tunnels_socket ON tunnels(socket_id);
CREATE TABLE released (local_port INTEGER PRIMARY KEY, at DOUBLE PRECISION NOT NULL);
CREATE INDEX released_at ON released(at);
CREATE TABLE creations (user_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
CREATE INDEX creations_user ON creations(user_id, at)
"""

# Many nodes: where each tunnel is placed, the change log every node follows, membership.
_V2_SQLITE = """
ALTER TABLE tunnels ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX tunnels_node ON tunnels(node);
CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT);
CREATE TABLE nodes (name TEXT PRIMARY KEY, tunnel_server TEXT NOT NULL, link TEXT NOT NULL,
    api TEXT NOT NULL, seen REAL NOT NULL)
"""

_V2_POSTGRES = """
ALTER TABLE tunnels ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX tunnels_node ON tunnels(node);
CREATE TABLE changes (seq BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT);
CREATE TABLE nodes (name TEXT PRIMARY KEY, tunnel_server TEXT NOT NULL, link TEXT NOT NULL,
    api TEXT NOT NULL, seen DOUBLE PRECISION NOT NULL)
"""

# Single-use invite tokens: what is kept of a spent one is its SHA-256.
_V3 = """
CREATE TABLE used_invites (token_sha256 TEXT PRIMARY KEY, user_id TEXT NOT NULL, at {} NOT NULL)
"""

# Route tables: a socket's table (JSON, '' = none), its own address ('' = none), the backend each
# tunnel serves.
_V4 = """
ALTER TABLE sockets ADD COLUMN routes TEXT NOT NULL DEFAULT '';
ALTER TABLE sockets ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE tunnels ADD COLUMN backend TEXT NOT NULL DEFAULT ''
"""

# The edge's own DNS: each node's public addresses (its answers for the zone), and the DNS-01
# TXT values it publishes while it orders the zone's wildcard certificate.
_V5 = """
ALTER TABLE nodes ADD COLUMN addresses TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN challenge TEXT NOT NULL DEFAULT ''
"""

# What a socket's app speaks (HTTP/2 without TLS for gRPC): an addition to the contract.
_V6 = "ALTER TABLE sockets ADD COLUMN upstream_protocol TEXT NOT NULL DEFAULT 'http/1.1'"

# Custom names (outside the zone) a socket claims, each with its proof's token and state (JSON list).
_V7 = "ALTER TABLE sockets ADD COLUMN hostnames TEXT NOT NULL DEFAULT '[]'"

MIGRATIONS = (
    Migration(1, "accounts, sockets, tunnels, released ports, creations", _V1_SQLITE, _V1_POSTGRES),
    Migration(2, "placement, change log, membership", _V2_SQLITE, _V2_POSTGRES),
    Migration(3, "spent invite tokens", _V3.format("REAL"), _V3.format("DOUBLE PRECISION")),
    Migration(4, "route tables", _V4, _V4),
    Migration(5, "nodes' public addresses and DNS-01 values for the edge's DNS", _V5, _V5),
    Migration(6, "a socket's upstream protocol", _V6, _V6),
    Migration(7, "a socket's custom hostnames", _V7, _V7),
)

SCHEMA_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                        "name TEXT NOT NULL, applied REAL NOT NULL)")


def pending(current: int) -> list:
    """The migrations a database at version ``current`` still needs, in order."""
    return [m for m in MIGRATIONS if m.version > current]
