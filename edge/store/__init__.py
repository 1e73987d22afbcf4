"""The edge's store: one interface (edge.store.sql.SqlStore), two backends.

- SQLite (edge.store.sqlite), the embedded default: one node, one file in the
  data directory, nothing else to run.
- PostgreSQL (edge.store.postgres), for many nodes sharing one set of names:
  ``--store postgresql://...``.

Both get the same schema from numbered migrations (edge.store.migrations).
Nothing outside this package imports a database driver.
"""

from pathlib import Path

from .model import (Change, DuplicateEmail, HostnameTaken, InviteUsed, LogTruncated, Node, NoFreeLocalPort,
                    Socket, StoreUnavailable, Tunnel, User)
from .sql import SqlStore
from .url import is_postgres, masked

__all__ = ["Change", "DuplicateEmail", "HostnameTaken", "InviteUsed", "LogTruncated", "Node",
           "NoFreeLocalPort", "Socket", "SqlStore", "StoreUnavailable", "Tunnel", "User", "is_postgres", "make_store",
           "masked"]


def make_store(url: str, sqlite_path: Path, local_ports: tuple, quarantine: float) -> SqlStore:
    """The store for ``--store``: a PostgreSQL URL, or "" / "sqlite" for the file at sqlite_path."""
    if is_postgres(url):
        from .postgres import PostgresBackend      # psycopg only where PostgreSQL is used
        backend = PostgresBackend(url)
    else:
        from .sqlite import SqliteBackend
        backend = SqliteBackend(sqlite_path)
    return SqlStore(backend, local_ports=local_ports, quarantine=quarantine)
