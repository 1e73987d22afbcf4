"""The embedded store: one SQLite file, one node (the default; nothing to run beside the edge).

Why it is shaped this way:
- The single-node edge keeps its behaviour: every query is a local indexed
  lookup or a small write, done synchronously on the loop thread inside
  ``async`` methods that never suspend, so a check and the write after it are
  one step on the event loop (no other request runs in between) exactly as
  before; no thread pool to reason about.
- WAL journal, so tests and operators can read the file while the edge writes.
- A database from before migrations (no ``schema_version``) is adopted by
  migration 1 as it is; one from before tunnel owners gets its column first.
"""

import sqlite3
import time
from contextlib import asynccontextmanager
from pathlib import Path

from .migrations import SCHEMA_VERSION_TABLE, pending
from .sql import IntegrityError


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self.wrote = False

    def _run(self, sql: str, args: tuple):
        try:
            return self._db.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def execute(self, sql: str, args: tuple = ()) -> None:
        self._run(sql, args)

    async def one(self, sql: str, args: tuple = ()):
        row = self._run(sql, args).fetchone()
        return dict(row) if row is not None else None

    async def all(self, sql: str, args: tuple = ()) -> list:
        return [dict(r) for r in self._run(sql, args).fetchall()]


class SqliteBackend:
    dialect = "sqlite"
    shared = False
    # Unix time in seconds by SQLite's clock (the same machine's as the edge's).
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.describe = "SQLite {}".format(self.path)
        self._db = None

    async def open(self) -> None:
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(SCHEMA_VERSION_TABLE)
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            tunnels = {r[1] for r in db.execute("PRAGMA table_info(tunnels)")}
            if tunnels and "owner" not in tunnels:      # a database from before tunnel owners
                db.execute("ALTER TABLE tunnels ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for m in pending(current):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in m.statements(self.dialect):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (m.version, m.name, time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def on_change(self, callback) -> None:
        """Nothing to listen to: only this process writes, and it applies its own changes."""

    @asynccontextmanager
    async def tx(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield _Tx(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @asynccontextmanager
    async def read(self):
        yield _Tx(self._db)
