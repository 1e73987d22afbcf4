"""Limits that keep the edge up for everyone: rate limits, quotas, registration policy.

Why it is shaped this way:
- The edge is on the internet with an open API: one account or one address
  must not be able to exhaust what all accounts share (tunnel port numbers,
  CPU spent on scrypt, database rows). Every refusal is a clear
  ``error_message`` with 429 (try later; ``Retry-After`` says when) or 403
  (a standing quota or policy; waiting does not help).
- Rate limits are token buckets per key (an address, an e-mail, an account)
  in memory: cheap, and a restart forgetting them is harmless. Login
  failures are counted per e-mail (guessing one account's password) and all
  login attempts per address (guessing many accounts' passwords).
- Password hashing runs in its own small thread pool, never in the event
  loop and never in the default pool other work shares; when too many hashes
  are queued the request is refused at once (503) instead of piling up.
- Registration is ``open``, ``closed`` (accounts are made by the operator)
  or ``invite`` (POST /user carries an ``invite_token`` from the operator's
  file). The default is closed when the API listens on a public address.
"""

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

from .config import Limits

HASH_WORKERS = 2
HASH_QUEUE_MAX = 32


class Refused(Exception):
    """A request refused by policy: status, message and an optional Retry-After."""

    def __init__(self, status: int, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """Token buckets: ``capacity`` tokens per key, refilled over ``period`` seconds."""
    capacity: float
    period: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict = field(default_factory=dict)

    def _bucket(self, key: str) -> _Bucket:
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) > 100_000:     # bounded memory under a flood of keys
                self._buckets.clear()
            b = self._buckets[key] = _Bucket(self.capacity, now)
        b.tokens = min(self.capacity, b.tokens + (now - b.at) * self.capacity / self.period)
        b.at = now
        return b

    def retry_after(self, key: str) -> Optional[float]:
        """None when key has a token left, else seconds until it has one."""
        if self.capacity <= 0:
            return None                            # 0 = no limit
        b = self._bucket(key)
        if b.tokens >= 1:
            return None
        return math.ceil((1 - b.tokens) * self.period / self.capacity)

    def spend(self, key: str) -> None:
        if self.capacity > 0:
            self._bucket(key).tokens -= 1


class Policy:
    def __init__(self, limits: Limits, registration: str, invite_tokens: frozenset):
        self.limits = limits
        self.registration = registration
        self._invites = invite_tokens
        self.logins_by_address = RateLimiter(limits.logins_per_minute_per_address, 60)
        self.login_failures = RateLimiter(limits.login_failures_per_minute, 60)
        self.registrations = RateLimiter(limits.registrations_per_hour_per_address, 3600)
        self._pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="password-hash")
        self._queued = 0

    @staticmethod
    def _check(limiter: RateLimiter, key: str, message: str) -> None:
        wait = limiter.retry_after(key)
        if wait is not None:
            raise Refused(429, message, wait)

    def registration_allowed(self, address: str, invite_token: str) -> None:
        if self.registration == "closed":
            raise Refused(403, "registration is closed on this edge: ask its operator for "
                               "an account")
        if self.registration == "invite" and invite_token not in self._invites:
            raise Refused(403, "registration on this edge needs a valid invite_token")
        self._check(self.registrations, address,
                    "too many accounts registered from your address; try again later")
        self.registrations.spend(address)

    def login_allowed(self, address: str, email: str) -> None:
        self._check(self.logins_by_address, address,
                    "too many login attempts from your address; try again later")
        self.logins_by_address.spend(address)
        self._check(self.login_failures, email,
                    "too many failed logins for this account; try again later")

    def login_failed(self, email: str) -> None:
        self.login_failures.spend(email)

    def socket_allowed(self, sockets_held: int) -> None:
        quota = self.limits.sockets_per_account
        if quota and sockets_held >= quota:
            raise Refused(403, "socket quota reached: this account may hold {} sockets; "
                               "delete one first".format(quota))

    def tcp_port_allowed(self, tcp_ports_held: int) -> None:
        """A tcp socket takes a public port of --tcp-ports, which every account shares."""
        quota = self.limits.tcp_ports_per_account
        if quota and tcp_ports_held >= quota:
            raise Refused(403, "tcp port quota reached: this account may hold {} tcp sockets "
                               "(each takes a public port); delete one first".format(quota))

    def tunnel_allowed(self, tunnels_held: int, created_last_hour: int) -> None:
        quota = self.limits.tunnels_per_account
        if quota and tunnels_held >= quota:
            raise Refused(403, "tunnel quota reached: this account may hold {} tunnels; "
                               "delete one first".format(quota))
        rate = self.limits.tunnel_creates_per_hour
        if rate and created_last_hour >= rate:
            raise Refused(429, "tunnel creation quota reached: at most {} tunnels per hour "
                               "per account".format(rate), 60)

    async def hash(self, fn, *args):
        """Run a password hash/verify in the edge's own small pool."""
        if self._queued >= HASH_QUEUE_MAX:
            raise Refused(503, "the edge is busy checking passwords; try again shortly", 1)
        self._queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._queued -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
