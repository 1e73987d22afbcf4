"""A socket's custom hostnames: set by its account, proven through DNS, checked again periodically.

Why it is shaped this way:
- One place decides who may hold a name (``refusal``): a name proven by one account is never
  another's (the store checks it again in the write's own transaction, edge.store.set_hostnames,
  so two nodes cannot both give it out), and one account holds a name on one socket at a time.
- Setting names (``put``) checks each unproven one at once, so a user who created the record first
  is served from the answer on; the answer says, per name, what record to create otherwise.
- Every ``--hostname-check-interval`` the first live node by name (as for moving tunnels off dead
  nodes: one node does it, and another takes over when it dies) looks at every claim again: a
  record created later verifies its name, a proof that is gone takes the name off the edge.
"""

import asyncio
import logging
from typing import Optional

from . import hostnames
from .cache import State
from .feed import Feed
from .hostnames import Checker, Claim
from .membership import Membership
from .store import HostnameTaken, SqlStore, StoreUnavailable
from .tasks import cancel

log = logging.getLogger(__name__)

CONCURRENT = 16


class Claims:
    def __init__(self, store: SqlStore, feed: Feed, checker: Checker, key: bytes,
                 membership: Optional[Membership] = None, interval: float = 300.0):
        self._store = store
        self._feed = feed
        self._state: State = feed.state
        self._checker = checker
        self._key = key
        self._membership = membership
        self._interval = interval
        self._task: Optional[asyncio.Task] = None
        self._checks = asyncio.Semaphore(CONCURRENT)     # DNS checks under way at once (a PUT's and the rechecks')

    def token(self, sock, name: str) -> str:
        return hostnames.token(self._key, sock.user_id, name)

    def view(self, sock) -> list:
        """The socket's ``hostnames`` as the API shows them: state, message, records that prove it."""
        out = []
        for c in hostnames.claims(sock):
            txt = self.token(sock, c.hostname)
            out.append({"hostname": c.hostname, "verified": c.verified, "message": c.message or (
                "not checked yet; to prove it, " + hostnames.how_to(c.hostname, sock.dnsname, txt)),
                "records": hostnames.records(c.hostname, sock.dnsname, txt)})
        return out

    def refusal(self, sock, name: str) -> str:
        """Why this socket may not claim name ("" when it may)."""
        for other in self._state.sockets.values():
            if other.socket_id == sock.socket_id:
                continue
            for c in other.hostnames:
                if c["hostname"] != name:
                    continue
                if other.user_id == sock.user_id:
                    return "{} is already a hostname of this account's socket {}: remove it there " \
                           "first".format(name, other.dnsname)
                if c.get("verified"):
                    return "{} is proven by another account: it cannot be claimed here".format(name)
        return ""

    async def put(self, sock, names: list) -> int:
        """Set the socket's names (claims kept for names it had, new ones checked now); the seq."""
        had = {c.hostname: c for c in hostnames.claims(sock)}
        out = [had.get(name) or Claim(name) for name in names]
        todo = [i for i, c in enumerate(out) if not c.verified]
        for i, judged in zip(todo, await asyncio.gather(*(self._judge(sock, out[i]) for i in todo))):
            out[i] = judged
        return await self._store.set_hostnames(sock, [c.as_dict() for c in out])

    async def _judge(self, sock, claim: Claim) -> Claim:
        async with self._checks:
            return await self._judge_now(sock, claim)

    async def _judge_now(self, sock, claim: Claim) -> Claim:
        verdict, message = await self._checker.check(claim.hostname, sock.dnsname,
                                                     self.token(sock, claim.hostname))
        if verdict and self.refusal(sock, claim.hostname):
            verdict, message = False, self.refusal(sock, claim.hostname)
        judged = hostnames.judged(claim, verdict, message)
        if judged.verified != claim.verified:
            log.info("hostname %s of socket %s: %s", claim.hostname, sock.dnsname, judged.message)
        return judged

    async def recheck(self) -> None:
        """Look at every claim of every socket again (at most CONCURRENT at once); write the sockets whose
        claims changed."""
        socks = [s for s in self._state.sockets.values() if s.hostnames]
        judged = await asyncio.gather(*(self._judge_all(s) for s in socks))
        for sock, (before, after) in zip(socks, judged):
            if [(c.verified, c.message) for c in after] == [(c.verified, c.message) for c in before]:
                continue
            now = self._state.sockets.get(sock.socket_id)
            if now is None or now.hostnames != sock.hostnames:
                continue                # changed meanwhile (a PUT): its own check stands
            try:
                seq = await self._store.set_hostnames(sock, [c.as_dict() for c in after])
            except HostnameTaken as exc:   # another node gave it to another account just now
                lost = [Claim(c.hostname, False, c.checked, "{} is proven by another account".format(
                    c.hostname)) if c.hostname == str(exc) else c for c in after]
                seq = await self._store.set_hostnames(sock, [c.as_dict() for c in lost])
            await self._feed.until(seq)     # this node's picture and data plane follow at once

    async def _judge_all(self, sock) -> tuple:
        before = hostnames.claims(sock)
        return before, await asyncio.gather(*(self._judge(sock, c) for c in before))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    def _mine(self) -> bool:
        if self._membership is None:
            return True
        live = self._membership.live_nodes()
        return not live or live[0].name == self._membership.me.name

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if not self._mine():
                continue
            try:
                await self.recheck()
            except StoreUnavailable as exc:
                log.warning("hostnames: cannot record the checks (%s); again in %.0f s", exc,
                            self._interval)
            except Exception:       # one bad record must not end the checks of every other
                log.exception("hostnames: check failed")
