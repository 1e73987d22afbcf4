"""Which edge nodes are alive: heartbeats in the store, one answer for everyone (``live_nodes``).

Why it is shaped this way:
- Each node writes a heartbeat every ``BEAT`` seconds and reads every node's
  age by the store's own clock (no clock skew between nodes). A node whose
  heartbeat is ``DEAD_AFTER`` seconds old is dead to the others. Placement,
  the health endpoint, the tunnel_server of every tunnel and the data plane's
  list of peers (and later the edge's DNS answers) all ask ``live_nodes()``:
  one truth, in one place.
- A node judges others only from a fresh view: after it could not reach the
  store (an outage of the store, not of the nodes), every heartbeat it reads
  is old, so it waits until it has beaten for ``DEAD_AFTER`` again before it
  declares anyone dead. While the store is away the last view stands.
- When nodes die, their tunnels are moved to live ones (edge.placement) by
  the first live node by name, in one store transaction that moves each
  tunnel once even if two nodes try at the same moment. A node that stops
  cleanly leaves at once, so its tunnels move without waiting.
- With SQLite there is one node and nothing to beat: it is always the only
  live node.
"""

import asyncio
import logging
import time
from typing import Awaitable, Callable, Optional

from . import placement
from .cache import State
from .store import Node, SqlStore, StoreUnavailable, Tunnel
from .tasks import cancel

log = logging.getLogger(__name__)

BEAT = 0.5
DEAD_AFTER = 3.0


def _seen(n: Node) -> tuple:
    """What the data plane is told of a live node (a change of any of it is pushed)."""
    return n.name, n.link, n.tunnel_server, n.addresses, n.challenge


class Membership:
    def __init__(self, store: SqlStore, state: State, me: Node,
                 on_change: Optional[Callable[[list], Awaitable[None]]] = None):
        self._store = store
        self._state = state
        self.me = me
        self._on_change = on_change
        self._live: list = [me]
        self._known: dict = {}                        # name -> Node, every node in the store, dead ones too
        self._fresh_since: Optional[float] = None     # monotonic time of the first beat of this run
        self.store_down_since: Optional[float] = None
        self._task: Optional[asyncio.Task] = None
        self.left = False
        self._challenges: dict = {}                   # who publishes -> its values (me.challenge joins them)

    # -- the one truth --------------------------------------------------------
    def live_nodes(self) -> list:
        """The live nodes (Node records), this one included, by name."""
        return list(self._live)

    def node(self, name: str) -> Optional[Node]:
        for n in self._live:
            if n.name == name:
                return n
        return None

    def tunnel_server(self, tunnel: Tunnel) -> str:
        """Where the tunnel's client connects: its node's SSH host (this node's if unknown).

        A tunnel whose node is dead but not moved yet (the instant between the declaration and the
        move) keeps its node's host until the move says where it goes: answering this node instead
        sent a client that asked then here, and being served here is then where the tunnel is, even
        when the socket's other tunnel is here too; a guess of the move could differ from the move."""
        node = self.node(tunnel.node) if tunnel.node else None
        if node is None and tunnel.node:
            node = self._known.get(tunnel.node)
        return (node or self.me).tunnel_server

    def place(self, taken: list) -> str:
        """The node for a new tunnel of a socket whose other tunnels are on ``taken``."""
        live = [n.name for n in self._live]
        return placement.choose(live, taken, self._state.node_load()) or self.me.name

    async def set_challenge(self, source: str, values: list) -> None:
        """Publish (or, with [], withdraw) ``source``'s ACME answers in this node's record: the
        zone's DNS-01 TXT values, a custom name's ``http01:<token>=<key authorization>``."""
        if values:
            self._challenges[source] = list(values)
        else:
            self._challenges.pop(source, None)
        self.me.challenge = ",".join(v for vs in self._challenges.values() for v in vs)
        await self.publish()

    async def publish(self) -> None:
        """Tell every node what this one's record says now (its DNS-01 values): at once here,
        within a heartbeat on the others."""
        if self._store.shared:
            await self._beat()
        elif self._on_change is not None:
            await self._on_change(self.live_nodes())

    # -- the loop ---------------------------------------------------------------
    async def start(self) -> None:
        if not self._store.shared:
            return
        try:
            await self._beat()
        except StoreUnavailable as exc:
            log.warning("membership: no first heartbeat (%s)", exc)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        if self._store.shared:
            self.left = True
            try:
                await self._store.leave(self.me.name)
                log.info("membership: %s left the edge", self.me.name)
            except StoreUnavailable:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(BEAT)
            try:
                await self._beat()
            except StoreUnavailable as exc:
                if self.store_down_since is None:
                    self.store_down_since = time.monotonic()
                    log.error("membership: the store is unreachable (%s); keeping the last view "
                              "of %d live nodes", exc, len(self._live))
                self._fresh_since = None
            except Exception:
                log.exception("membership: heartbeat failed")

    async def _beat(self) -> None:
        await self._store.heartbeat(self.me)
        nodes = await self._store.nodes()
        self._known = {n.name: n for n in nodes}
        now = time.monotonic()
        if self.store_down_since is not None:
            log.info("membership: the store is back after %.1f s", now - self.store_down_since)
            self.store_down_since = None
        if self._fresh_since is None:
            self._fresh_since = now
        if now - self._fresh_since < DEAD_AFTER:
            live = [n for n in nodes if n.age < DEAD_AFTER or n.name in {m.name for m in self._live}]
        else:
            live = [n for n in nodes if n.age < DEAD_AFTER]
        if all(n.name != self.me.name for n in live):
            live.append(self.me)
        live.sort(key=lambda n: n.name)
        if [n.name for n in live] != [n.name for n in self._live]:
            log.info("membership: live nodes %s (were %s)", [n.name for n in live],
                     [n.name for n in self._live])
        changed = [_seen(n) for n in live] != [_seen(n) for n in self._live]
        self._live = live
        if changed and self._on_change is not None:
            await self._on_change(self.live_nodes())
        if now - self._fresh_since >= DEAD_AFTER and live[0].name == self.me.name:
            await self._move_off_dead()

    async def _move_off_dead(self) -> None:
        live = {n.name for n in self._live}
        dead = {t.node for t in self._state.tunnels.values() if t.node not in live}
        if not dead:
            return
        load = self._state.node_load()

        def place(tunnel: Tunnel, taken: list) -> Optional[str]:
            node = placement.choose(sorted(live), taken, load)
            if node is not None:
                load[node] = load.get(node, 0) + 1
            return node

        seq = await self._store.move_tunnels(dead, place)
        if seq:
            log.info("membership: moved the tunnels of %s to live nodes", sorted(dead))
