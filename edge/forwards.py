"""Where each tunnel's client really is: a forward that came up here moves the tunnel here.

Why it is shaped this way:
- Placement says where a tunnel's client should connect (``tunnel_server``),
  but a client may connect elsewhere: real mysocketctl 0.15 always uses its
  fixed SSH host, a name behind several A records lands on any node, and a
  client whose node was declared dead reconnects wherever it can. Any node
  accepts a forward of the account's own tunnel; this module then records in
  the store that the tunnel is served here (``set_tunnel_node``), so every
  other node carries its requests here, and the node that had it (if it is
  alive) ends that old session: newest wins across nodes as within one, and
  no node keeps a binding the edge no longer routes to.
- The data plane reports forwards coming up (``GET /events``, a long poll on
  the control socket): no polling of the forwards. While the store is away
  the move waits (the node serves the forward itself meanwhile) and is made
  as soon as a write succeeds again.
"""

import asyncio
import logging
from typing import Optional

from .cache import State
from .feed import Feed
from .plane import DataPlane, DataPlaneError
from .store import SqlStore, StoreUnavailable
from .tasks import cancel

log = logging.getLogger(__name__)

RETRY = 1.0


class Forwards:
    def __init__(self, plane: DataPlane, store: SqlStore, state: State, feed: Feed, node: str):
        self._plane = plane
        self._store = store
        self._state = state
        self._feed = feed
        self._node = node
        self._pending: set = set()            # local_ports that came up here, not yet recorded
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        if self._store.shared:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        boot, after = None, 0
        while True:
            try:
                got = await self._plane.events(after, wait=RETRY if self._pending else 10.0)
            except DataPlaneError:
                await asyncio.sleep(0.5)              # restarting: it is given the state again
                continue
            if got["boot"] != boot:
                boot, after = got["boot"], 0
                continue                               # a new child: read its events from the start
            after = got["next"]
            for event in got["events"]:
                if event["kind"] == "up":
                    self._pending.add(event["local_port"])
                else:
                    self._pending.discard(event["local_port"])
            await self._settle()

    async def _settle(self) -> None:
        for port in sorted(self._pending):
            tunnel = self._state.tunnel_by_port(port)
            if tunnel is None or tunnel.node == self._node:
                self._pending.discard(port)
                continue
            try:
                seq = await self._store.set_tunnel_node(tunnel, self._node)
            except StoreUnavailable:
                return                                 # again on the next event or in RETRY s
            log.info("tunnel local_port=%d is served here (was placed on %s)", port, tunnel.node or "-")
            self._pending.discard(port)
            await self._feed.until(seq)
