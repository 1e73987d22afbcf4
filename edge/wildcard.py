"""One certificate for the whole zone (<zone> and *.<zone>), by ACME DNS-01, shared by every node.

Why it is shaped this way:
- Every socket's name is one label under the zone, so one wildcard covers
  them all and sockets never cause an ACME order: a CA's limit on new
  certificates per registered domain (Let's Encrypt: 50 a week) is never in
  reach, whatever the number of sockets.
- The DNS-01 answer is the edge's own DNS (edge/dataplane/internal/dns). The
  CA may ask any of the zone's name servers, so the ordering node publishes
  its TXT values in its membership record (edge.membership), which every node
  reads at each heartbeat and gives its data plane with the live nodes.
- The certificate lives in the store (``meta``), so every node serves the
  same one and a node that starts takes it instead of ordering; its key is
  encrypted there (AES-256-GCM, edge.sealing) with a key that never enters
  the database.
- One node orders at a time: a lock in the store (a ``meta`` row naming the
  node and until when, set only if absent or expired, compare-and-swap). The
  others wait and take the result from the store.
- Renewal well before expiry: when less than ``--acme-renew-before`` (30
  days) or a third of the certificate's lifetime is left, whichever is
  sooner (a CA's short-lived certificates, such as Let's Encrypt's 6-day
  ones or a test CA's hour, are renewed at two thirds of their life, not at
  once and forever). The check runs every ``--acme-check-interval``, every
  few seconds while this node serves no wildcard yet. Installing swaps the certificate for new
  handshakes only: open connections keep theirs.
- The data plane holds the ACME client and the order (x/crypto/acme, as for
  HTTP-01); this module only decides when, publishes, locks and keeps.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Optional

from . import storelock
from .membership import Membership
from .plane import DataPlane, DataPlaneError
from .sealing import Sealer
from .store import SqlStore, StoreUnavailable
from .tasks import cancel

log = logging.getLogger(__name__)

LOCK_FOR = 300.0            # an order that takes longer than this lets another node try
PROPAGATION = 1.5           # every live node has beaten (0.5 s) and pushed its TXT values
WAITING = 2.0               # how often a node without a wildcard looks again
FAILED_FIRST, FAILED_MAX = 10.0, 3600.0


class WildcardError(Exception):
    """What the store holds cannot be used (another key, a damaged record)."""


@dataclass
class WildcardConfig:
    zone: str
    renew_before: float     # seconds before notAfter at which a node orders a new one
    check_interval: float   # seconds between checks while it has one


class Wildcard:
    def __init__(self, config: WildcardConfig, store: SqlStore, plane: DataPlane,
                 membership: Membership, sealer: Sealer):
        self._c = config
        self._store, self._plane, self._membership, self._sealer = store, plane, membership, sealer
        self._cert_key = "wildcard:" + config.zone
        self._lock_key = "wildcard-lock:" + config.zone
        self._installed: Optional[str] = None     # the sealed record this node serves
        self.not_before = self.not_after = 0.0
        self.orders = 0                           # orders this node made (for tests and logs)
        self._held: Optional[str] = None          # the lock's value while this node holds it
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        """Serve the stored certificate before the node says READY, then keep it fresh."""
        try:
            await self._take_stored()
        except (StoreUnavailable, DataPlaneError, WildcardError) as exc:
            log.error("wildcard for %s: cannot serve the stored certificate yet: %s",
                      self._c.zone, exc)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        failed = 0.0
        while True:
            try:
                wait = await self.check()
                failed = 0.0
            except (StoreUnavailable, DataPlaneError, WildcardError) as exc:
                failed = min(failed * 2 or FAILED_FIRST, FAILED_MAX)
                log.error("wildcard for %s: %s; trying again in %.0f s", self._c.zone, exc, failed)
                wait = failed
            except Exception:
                failed = min(failed * 2 or FAILED_FIRST, FAILED_MAX)
                log.exception("wildcard for %s failed; trying again in %.0f s", self._c.zone, failed)
                wait = failed
            await asyncio.sleep(wait)

    def _renew_at(self) -> float:
        """When the certificate served is due (unix seconds; 0: none served)."""
        left = min(self._c.renew_before, (self.not_after - self.not_before) / 3)
        return self.not_after - left

    def _until_due(self) -> float:
        return min(self._c.check_interval, max(self._renew_at() - time.time(), 1.0))

    async def check(self) -> float:
        """Serve the stored certificate, order one if none is good for long enough; the seconds
        until the next check."""
        await self._take_stored()
        if time.time() < self._renew_at():
            return self._until_due()
        if not await self._lock():
            log.info("wildcard for %s: another node is ordering; waiting for its certificate",
                     self._c.zone)
            return WAITING
        try:
            await self._take_stored()              # another node may have finished meanwhile
            if time.time() >= self._renew_at():
                await self._order()
        finally:
            await self._unlock()
        return self._until_due()

    async def _take_stored(self) -> None:
        sealed = await self._store.meta_get(self._cert_key)
        if sealed is None or sealed == self._installed:
            return
        try:
            record = json.loads(self._sealer.open(sealed, self._cert_key))
        except ValueError as exc:
            raise WildcardError("the stored certificate cannot be read ({}): is every node given "
                                "the same --cluster-secret-file?".format(exc)) from None
        got = await self._plane.wildcard_install(record["cert"], record["key"])
        self.not_before, self.not_after = got["not_before"], got["not_after"]
        self._installed = sealed

    async def _order(self) -> None:
        log.info("wildcard for %s: ordering %s and *.%s by DNS-01", self._c.zone, self._c.zone,
                 self._c.zone)
        txt = await self._plane.wildcard_begin()
        self.orders += 1
        try:
            await self._membership.set_challenge("wildcard", txt)
            await asyncio.sleep(PROPAGATION)
            got = await self._plane.wildcard_finish()
        finally:
            try:
                await self._membership.set_challenge("wildcard", [])
            except StoreUnavailable:
                pass                              # the next heartbeat clears it
        sealed = self._sealer.seal(json.dumps({"cert": got["cert"], "key": got["key"]}),
                                   self._cert_key)
        await self._store.meta_put(self._cert_key, sealed)
        self._installed = sealed
        self.not_before, self.not_after = got["not_before"], got["not_after"]
        log.info("wildcard for %s: issued, valid until %s, kept in the store for every node",
                 self._c.zone, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.not_after)))

    async def _lock(self) -> bool:
        self._held = await storelock.take(self._store, self._lock_key, self._membership.me.name, LOCK_FOR)
        return self._held is not None

    async def _unlock(self) -> None:
        await storelock.give_back(self._store, self._lock_key, self._held)
