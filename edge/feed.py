"""Keeps this node's picture (edge.cache) up to date from the store's change log.

Why it is shaped this way:
- At start the node loads everything once; from then on it only reads the
  change log from its last sequence: when the store notifies a commit
  (LISTEN/NOTIFY, within milliseconds on every node), when the listener
  (re)connects (whatever was missed while away), and when this node's own API
  wrote (``until(seq)``: the API answers only once its node has applied its
  change). There is no polling: a node with nothing to learn reads nothing.
- Catching up is serialised, and each batch of changes becomes one delta for
  the data plane (``on_delta``), pushed before the next batch, so the data
  plane sees changes in log order and a change costs the same whatever the
  total. A node further behind than the log reaches (pruned) reloads
  everything once (``on_reload``).
- While the store is away nothing here changes: the node serves from what it
  has, and the next wake-up catches up.
"""

import asyncio
import logging
import time
from typing import Awaitable, Callable

from .cache import Delta, State
from .store import LogTruncated, SqlStore, StoreUnavailable
from .tasks import cancel

log = logging.getLogger(__name__)

KEEP_LOG = 3600.0           # seconds of change log kept; a node away longer reloads
PRUNE_EVERY = 600.0


class Feed:
    def __init__(self, store: SqlStore, state: State,
                 on_delta: Callable[[Delta], Awaitable[None]],
                 on_reload: Callable[[], Awaitable[None]]):
        self._store = store
        self.state = state
        self._on_delta = on_delta
        self._on_reload = on_reload
        self._lock = asyncio.Lock()
        self._woken = asyncio.Event()
        self._tasks: list = []

    async def load(self) -> None:
        """Everything, once (at start, or when the log no longer reaches back far enough)."""
        seq, users, sockets, tunnels = await self._store.load_all()
        self.state.load(seq, users, sockets, tunnels)
        log.info("state loaded at change %d: %d accounts, %d sockets, %d tunnels",
                 seq, len(users), len(sockets), len(tunnels))

    def start(self) -> None:
        self._store.on_change(self.wake)
        self._tasks = [asyncio.ensure_future(self._follow())]
        if self._store.shared:
            self._tasks.append(asyncio.ensure_future(self._prune()))

    async def stop(self) -> None:
        await cancel(*self._tasks)

    def wake(self) -> None:
        self._woken.set()

    async def until(self, seq: int) -> None:
        """Return once this node applied the change log up to ``seq`` (its own write)."""
        if seq and self.state.seq < seq:
            try:
                await self.catch_up()
            except StoreUnavailable as exc:      # the write is in; the listener catches up later
                log.warning("wrote change %d but cannot read it back yet: %s", seq, exc)

    async def refresh(self) -> bool:
        """Catch up now (the API missed a record another node may have written a moment ago);
        True when something new was applied. Never raises: without the store, what we have."""
        if not self._store.shared:
            return False                  # one node: its picture has every write already
        before = self.state.seq
        try:
            await self.catch_up()
        except StoreUnavailable:
            return False
        return self.state.seq != before

    async def catch_up(self) -> None:
        async with self._lock:
            delta = Delta()
            while True:
                try:
                    changes = await self._store.changes_since(self.state.seq)
                except LogTruncated:
                    log.warning("the change log was pruned past change %d: loading everything",
                                self.state.seq)
                    await self.load()
                    await self._on_reload()
                    return
                for change in changes:
                    delta.merge(self.state.apply(change))
                if len(changes) < 1000:
                    break
            if delta:
                await self._on_delta(delta)

    async def _follow(self) -> None:
        while True:
            await self._woken.wait()
            self._woken.clear()
            try:
                await self.catch_up()
            except StoreUnavailable as exc:
                log.warning("cannot read the change log (%s); serving from change %d",
                            exc, self.state.seq)
            except Exception:
                log.exception("applying changes failed; will retry on the next change")

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                await self._store.prune(time.time() - KEEP_LOG)
            except StoreUnavailable:
                pass
