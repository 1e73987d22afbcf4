"""The shared store: PostgreSQL through psycopg 3's async API, for an edge of many nodes.

Why it is shaped this way:
- psycopg's ``AsyncConnection`` never blocks the event loop. Each node holds
  three connections: one for writes (every write takes the edge-wide writers'
  lock anyway, so a second write connection would only queue), one for reads
  and heartbeats, one that LISTENs. No pool (psycopg_pool's reconnection
  backs off to half a minute, which would keep writes refused long after the
  store is back); a broken connection is dropped and the next call opens a
  new one at once.
- Every call is bounded: connect_timeout, server-side statement, lock and
  idle-in-transaction timeouts, and an asyncio deadline around each
  transaction (a store that stops answering without closing, SIGSTOP or a
  partition, raises too). Any failure to reach the store is
  ``StoreUnavailable``: the API answers 503 and the node serves on from what
  it has.
- A write transaction ends with ``pg_notify``: delivered on commit to every
  listening node, which then reads the log from its last sequence
  (edge.feed). The listener wakes the feed on every (re)connect as well, so a
  node that missed notifications while away catches up without polling; and
  it probes its connection when no notification came for a while, so a
  silently dead store is noticed.
- Migrations run under a session advisory lock: nodes started together
  migrate once.
"""

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Callable, Optional

import psycopg
from psycopg.rows import dict_row

from ..tasks import cancel
from .migrations import SCHEMA_VERSION_TABLE, pending
from .model import StoreUnavailable
from .sql import IntegrityError
from .url import masked

log = logging.getLogger(__name__)

CHANNEL = "edge_changes"
WRITE_LOCK = 0x6D79736F636B6574      # "mysocket": the edge-wide writers' lock
MIGRATE_LOCK = WRITE_LOCK + 1
DEADLINE = 8.0                       # seconds a transaction may take before the store counts as down
OPTIONS = "-c statement_timeout=5000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=10000"
PROBE_EVERY = 5.0
IDLE_CHECK = 1.0


class _Tx:
    def __init__(self, conn: psycopg.AsyncConnection):
        self._conn = conn
        self.wrote = False

    async def _run(self, sql: str, args: tuple):
        try:
            return await self._conn.execute(sql.replace("?", "%s"), args)
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def execute(self, sql: str, args: tuple = ()) -> None:
        await self._run(sql, args)

    async def one(self, sql: str, args: tuple = ()):
        return await (await self._run(sql, args)).fetchone()

    async def all(self, sql: str, args: tuple = ()) -> list:
        return await (await self._run(sql, args)).fetchall()


class _Link:
    """One connection, opened on first use and again after any failure."""

    def __init__(self, conninfo: str):
        self._conninfo = conninfo
        self._conn: Optional[psycopg.AsyncConnection] = None
        self.lock = asyncio.Lock()
        self.used = 0.0

    async def get(self) -> psycopg.AsyncConnection:
        """The connection; one idle for a while is checked first, so the first write after
        the store came back does not fail on a connection the outage broke."""
        if self._conn is not None and not self._conn.closed and time.monotonic() - self.used > IDLE_CHECK:
            try:
                await self._conn.execute("SELECT 1")
            except _DOWN:
                await self.drop()
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, row_factory=dict_row, connect_timeout=3,
                options=OPTIONS, keepalives=1, keepalives_idle=5, keepalives_interval=2,
                keepalives_count=2)
        return self._conn

    async def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 1)
            except (psycopg.Error, OSError, asyncio.TimeoutError):
                pass


_DOWN = (psycopg.OperationalError, psycopg.InterfaceError, OSError, asyncio.TimeoutError)


class PostgresBackend:
    dialect = "postgres"
    shared = True
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

    def __init__(self, conninfo: str):
        self._conninfo = conninfo
        self.describe = "PostgreSQL {}".format(masked(conninfo))
        self._writer = _Link(conninfo)
        self._reader = _Link(conninfo)
        self._callbacks: list = []
        self._listener: Optional[asyncio.Task] = None
        self._closed = False

    async def open(self) -> None:
        try:
            async with asyncio.timeout(60):
                conn = await self._writer.get()
                await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
                try:
                    await conn.execute(SCHEMA_VERSION_TABLE.replace("REAL", "DOUBLE PRECISION"))
                    row = await (await conn.execute(
                        "SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")).fetchone()
                    for m in pending(row["v"]):
                        async with conn.transaction():
                            for statement in m.statements(self.dialect):
                                await conn.execute(statement)
                            await conn.execute("INSERT INTO schema_version VALUES (%s, %s, %s)",
                                               (m.version, m.name, time.time()))
                        log.info("store: applied migration %d (%s)", m.version, m.name)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
        except _DOWN as exc:
            await self._writer.drop()
            raise StoreUnavailable("cannot reach {}: {}".format(self.describe, exc)) from exc
        self._listener = asyncio.ensure_future(self._listen())

    async def close(self) -> None:
        self._closed = True
        await cancel(self._listener)
        await self._writer.drop()
        await self._reader.drop()

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def _wake(self) -> None:
        for cb in self._callbacks:
            cb()

    @asynccontextmanager
    async def _on(self, link: _Link, write: bool):
        async with link.lock:
            try:
                async with asyncio.timeout(DEADLINE):
                    conn = await link.get()
                    if not write:
                        yield _Tx(conn)
                        link.used = time.monotonic()
                        return
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                        tx = _Tx(conn)
                        yield tx
                        if tx.wrote:
                            await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
                link.used = time.monotonic()
            except _DOWN as exc:
                await link.drop()
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    def tx(self):
        """A write transaction under the edge-wide writers' lock."""
        return self._on(self._writer, write=True)

    def read(self):
        """Reads and single-statement upserts (heartbeats), autocommit, no lock."""
        return self._on(self._reader, write=False)

    async def _listen(self) -> None:
        """LISTEN for committed changes; wake the feed on each, and on every (re)connect."""
        down_since = None
        while not self._closed:
            conn = None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=3, options=OPTIONS)
                await conn.execute("LISTEN " + CHANNEL)
                if down_since is not None:
                    log.info("store: listening again after %.1f s", time.monotonic() - down_since)
                    down_since = None
                self._wake()                    # whatever was missed while not listening
                while True:
                    async for _ in conn.notifies(timeout=PROBE_EVERY):
                        self._wake()
                    await asyncio.wait_for(conn.execute("SELECT 1"), 3)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("store: lost the change notifications (%s); serving from the last "
                              "state, retrying", str(exc).strip() or type(exc).__name__)
            finally:
                if conn is not None:
                    try:
                        await asyncio.wait_for(conn.close(), 1)
                    except (psycopg.Error, OSError, asyncio.TimeoutError):
                        pass
            await asyncio.sleep(0.3)
