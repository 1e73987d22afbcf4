"""Certificates for proven custom hostnames: ordered by one node at a time, kept sealed in the store.

Why it is shaped this way (edge.wildcard does the same for the zone's one certificate):
- A custom name is ordered when it is proven, never on a handshake: a visitor cannot make the edge
  ask the CA for anything, and a name whose order failed is not ordered again before its backoff
  ends (``hostcert-failed:<name>`` in the store: 1 minute, doubling up to a day, shared by every
  node, so a failing name costs one order per backoff on the whole edge, not one per handshake).
- One node orders a name at a time: a lock in the store (``hostcert-lock:<name>``, compare-and-swap,
  expiring), as for the wildcard.
- HTTP-01: the CA may ask any node (the name resolves to all of them), so the ordering node
  publishes the answers in its membership record (``http01:<token>=<key authorization>``) and
  every node's data plane answers them.
- The certificate and key live in the store (``hostcert:<name>``), sealed with AES-256-GCM
  (edge.sealing) under a key that never enters the database; every node installs it, and renews
  it when less than ``--acme-renew-before`` or a third of its life is left.
"""

import asyncio
import json
import logging
import time
from typing import Optional

from . import storelock
from .cache import State
from .hostnames import verified_names
from .membership import Membership
from .plane import DataPlane, DataPlaneError
from .sealing import Sealer
from .store import SqlStore, StoreUnavailable
from .tasks import cancel

log = logging.getLogger(__name__)

CHECK = 2.0                 # how often every proven name is looked at
LOCK_FOR = 300.0
PROPAGATION = 1.5           # every live node has beaten (0.5 s) and pushed the answers
FAILED_FIRST, FAILED_MAX = 60.0, 86400.0


class HostCerts:
    def __init__(self, store: SqlStore, state: State, plane: DataPlane, membership: Membership,
                 sealer: Sealer, renew_before: float):
        self._store, self._state, self._plane = store, state, plane
        self._membership, self._sealer = membership, sealer
        self._renew_before = renew_before
        self._installed: dict = {}      # name -> (sealed record served here, not_before, not_after)
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        while True:
            for name in self._names():
                try:
                    await self.check(name)
                except (StoreUnavailable, DataPlaneError, ValueError) as exc:
                    log.error("certificate for %s: %s", name, exc)
                except Exception:        # one name's trouble must not stop the others'
                    log.exception("certificate for %s failed", name)
            await asyncio.sleep(CHECK)

    def _names(self) -> list:
        """Proven custom names of sockets the edge terminates TLS for (tls sockets pass through)."""
        return sorted({n for s in list(self._state.sockets.values()) if s.socket_type in ("http", "https")
                       for n in verified_names(s)})

    def _due(self, name: str) -> bool:
        _, not_before, not_after = self._installed.get(name, ("", 0.0, 0.0))
        return time.time() >= not_after - min(self._renew_before, (not_after - not_before) / 3)

    async def check(self, name: str) -> None:
        await self._take_stored(name)
        if not self._due(name) or await self._failing(name):
            return
        lock = "hostcert-lock:" + name
        held = await storelock.take(self._store, lock, self._membership.me.name, LOCK_FOR)
        if held is None:
            return                      # another node orders it; its certificate comes through the store
        try:
            await self._take_stored(name)
            if self._due(name) and not await self._failing(name):
                await self._order(name)
        finally:
            await storelock.give_back(self._store, lock, held)

    async def _take_stored(self, name: str) -> None:
        key = "hostcert:" + name
        sealed = await self._store.meta_get(key)
        if sealed is None or sealed == self._installed.get(name, ("",))[0]:
            return
        record = json.loads(self._sealer.open(sealed, key))
        got = await self._plane.hostcert_install(name, record["cert"], record["key"])
        self._installed[name] = (sealed, got["not_before"], got["not_after"])

    async def _failing(self, name: str) -> bool:
        failed = await self._store.meta_get("hostcert-failed:" + name)
        return failed is not None and json.loads(failed)["until"] > time.time()

    async def _order(self, name: str) -> None:
        log.info("certificate for %s: ordering it by HTTP-01", name)
        source = "hostcert:" + name
        try:
            answers = await self._plane.hostcert_begin(name)
            await self._membership.set_challenge(source, ["http01:{}={}".format(t, a) for t, a in answers.items()])
            if self._store.shared:
                await asyncio.sleep(PROPAGATION)
            got = await self._plane.hostcert_finish(name)
        except DataPlaneError as exc:
            await self._failed(name, str(exc))
            return
        finally:
            try:
                await self._membership.set_challenge(source, [])
            except StoreUnavailable:
                pass                    # the next heartbeat clears it
        key = "hostcert:" + name
        sealed = self._sealer.seal(json.dumps({"cert": got["cert"], "key": got["key"]}), key)
        await self._store.meta_put(key, sealed)
        await self._store.meta_swap("hostcert-failed:" + name, await self._store.meta_get(
            "hostcert-failed:" + name), None)
        self._installed[name] = (sealed, got["not_before"], got["not_after"])
        log.info("certificate for %s: issued, valid until %s, kept in the store for every node", name,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(got["not_after"])))

    async def _failed(self, name: str, why: str) -> None:
        key = "hostcert-failed:" + name
        old = await self._store.meta_get(key)
        wait = min(json.loads(old)["wait"] * 2, FAILED_MAX) if old else FAILED_FIRST
        await self._store.meta_put(key, json.dumps({"until": time.time() + wait, "wait": wait, "error": why}))
        log.error("certificate for %s: the order failed (%s); not ordered again for %.0f s, on any node",
                  name, why, wait)
