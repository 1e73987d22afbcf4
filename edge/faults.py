"""Injected API faults, for tests and benchmarks of clients (``--admin`` only).

Why it is shaped this way:
- One immutable ``FaultSettings`` value, replaced as a whole by
  ``POST /_admin/faults`` (``{}`` clears everything), so a request never sees
  half of an update.
- Faults are an aiohttp middleware in front of the normal API routes only;
  ``/_admin/`` stays reliable so a test can always switch faults off again.
- Per request, in this order: ``latency`` seconds of delay; with probability
  ``timeout_rate`` the request is held for ``hold`` seconds (a client with any
  sane timeout gives up first; the edge then answers 504); with probability
  ``error_rate`` the answer is ``status`` (e.g. 500 or 429) with a JSON
  ``error_message`` and, when ``retry_after`` is set, a ``Retry-After`` header.
  A faulted request never reaches its handler, so it changes no state.
"""

import asyncio
import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Optional

from aiohttp import web

ADMIN_PREFIX = "/_admin/"


@dataclass(frozen=True)
class FaultSettings:
    error_rate: float = 0.0
    status: int = 500
    retry_after: Optional[float] = None
    latency: float = 0.0
    timeout_rate: float = 0.0
    hold: float = 300.0

    @classmethod
    def from_json(cls, body: dict) -> "FaultSettings":
        """Validated settings from a JSON object; ValueError says what is wrong."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError("unknown fault fields: " + ", ".join(unknown))
        for name, value in body.items():
            if value is None and name == "retry_after":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("{} must be a number".format(name))
        settings = cls(**body)
        for name in ("error_rate", "timeout_rate"):
            if not 0.0 <= getattr(settings, name) <= 1.0:
                raise ValueError("{} must be between 0 and 1".format(name))
        if not (isinstance(settings.status, int) and 400 <= settings.status <= 599):
            raise ValueError("status must be an integer from 400 to 599")
        for name in ("latency", "hold", "retry_after"):
            value = getattr(settings, name)
            if value is not None and not 0 <= value <= 86400:
                raise ValueError("{} must be between 0 and 86400 seconds".format(name))
        return settings

    def to_json(self) -> dict:
        return asdict(self)


class Faults:
    def __init__(self, settings: FaultSettings = FaultSettings(),
                 rng: random.Random = random.Random()):
        self.settings = settings
        self._rng = rng

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        settings = self.settings
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        if settings.latency:
            await asyncio.sleep(settings.latency)
        if settings.timeout_rate and self._rng.random() < settings.timeout_rate:
            await asyncio.sleep(settings.hold)
            return _error(504, "fault injection: request held and dropped", None)
        if settings.error_rate and self._rng.random() < settings.error_rate:
            return _error(settings.status, "fault injection: simulated error",
                          settings.retry_after)
        return await handler(request)


def _error(status: int, message: str, retry_after: Optional[float]) -> web.Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(int(math.ceil(retry_after)))
    return web.json_response({"error_message": message}, status=status, headers=headers)
