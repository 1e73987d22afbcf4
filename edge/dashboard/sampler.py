"""The last 15 minutes of each socket's traffic, sampled from this node's data plane.

Why it is shaped this way:
- The data plane counts (Prometheus counters on its control socket, ``GET
  /metrics``); the dashboard wants rates over time. So this node reads the
  counters every ``interval`` seconds and keeps, per socket, a ring of the
  rates between two reads (``collections.deque`` with a ``maxlen``: 15 minutes
  of points, never more, whatever runs how long). Sockets that no longer have
  series lose their ring at the next read, so memory follows the live sockets.
- Every node samples its own data plane: on a many-node edge a node's rings
  hold the traffic that entered through that node (edge/README.md says so).
- A counter that went down means the data plane started again (its counters
  start at 0): the new value is the traffic since, never a negative rate.
- The first read only sets the baseline (what was counted before this
  process started is not "the last interval"); a socket that appears later
  starts from 0, which is where its counters started.
- When the data plane's metrics cannot be read, the rings stay as they are
  and ``status`` says why in one line for the page.
- What counts as an error: a 5xx from anyone, or a 4xx the edge answered by
  itself (no tunnel, rate-limited, auth refused...). An app's own 404 is the
  app's business, an edge's redirect to https is not a failure.
"""

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional

from . import promtext

log = logging.getLogger(__name__)

WINDOW = 900.0           # seconds the chart shows
REQUESTS = "mysocket_edge_requests_total"
BYTES = "mysocket_edge_bytes_total"
ACTIVE = "mysocket_edge_active_connections"
TUNNELS = "mysocket_edge_tunnels"
CERT_EXPIRY = "mysocket_edge_certificate_expiry_timestamp_seconds"
ACCOUNT_CONNECTIONS = "mysocket_edge_account_connections"
ACCOUNT_SESSIONS = "mysocket_edge_account_sessions"
NAMES = (REQUESTS, BYTES, ACTIVE, TUNNELS, CERT_EXPIRY, ACCOUNT_CONNECTIONS, ACCOUNT_SESSIONS)


@dataclass(frozen=True)
class Point:
    """Rates per second over the interval that ended at ``at`` (unix seconds)."""
    at: float
    seconds: float       # how long the interval was
    requests: float
    errors: float
    bytes_in: float
    bytes_out: float


@dataclass
class Reading:
    """One read of the data plane's metrics, reduced to what the dashboard shows."""
    totals: dict = field(default_factory=dict)        # socket_id -> [requests, errors, in, out]
    active: dict = field(default_factory=dict)        # socket_id -> open connections now
    tunnels: dict = field(default_factory=dict)       # socket_id -> live forwards on this node
    certificates: dict = field(default_factory=dict)  # name -> notAfter (unix seconds)
    accounts: dict = field(default_factory=dict)      # account_id -> connections held now
    sessions: dict = field(default_factory=dict)      # account_id -> SSH sessions on this node


def is_error(labels: dict) -> bool:
    code = labels.get("code_class", "")
    return code == "5xx" or (code == "4xx" and labels.get("answered_by") == "edge")


def reduce(text: str) -> Reading:
    """The data plane's Prometheus text -> a Reading (pure)."""
    r = Reading()
    for name, labels, value in promtext.samples(text, NAMES):
        sid = labels.get("socket_id", "")
        if name == REQUESTS and sid:
            t = r.totals.setdefault(sid, [0.0, 0.0, 0.0, 0.0])
            t[0] += value
            if is_error(labels):
                t[1] += value
        elif name == BYTES and sid:
            t = r.totals.setdefault(sid, [0.0, 0.0, 0.0, 0.0])
            t[2 if labels.get("direction") == "in" else 3] += value
        elif name == ACTIVE and sid:
            r.active[sid] = r.active.get(sid, 0.0) + value
        elif name == TUNNELS and sid:
            r.tunnels[sid] = r.tunnels.get(sid, 0.0) + value
        elif name == CERT_EXPIRY and labels.get("name"):
            r.certificates[labels["name"]] = value
        elif name == ACCOUNT_CONNECTIONS and labels.get("account_id"):
            r.accounts[labels["account_id"]] = value
        elif name == ACCOUNT_SESSIONS and labels.get("account_id"):
            r.sessions[labels["account_id"]] = value
    return r


class Sampler:
    """Reads ``fetch()`` (the data plane's metrics, Prometheus text) every ``interval`` seconds
    into one bounded ring per socket."""

    def __init__(self, fetch: Callable[[], Awaitable[bytes]], interval: float,
                 clock: Callable[[], float] = time.time):
        self._fetch = fetch
        self.interval = interval
        self._clock = clock
        self._rings: dict = {}
        self._last: Optional[tuple] = None       # (at, totals) of the previous read
        self.latest = Reading()
        self.status = "no reading yet"
        self._task: Optional[asyncio.Task] = None

    @property
    def points_kept(self) -> int:
        return int(WINDOW / self.interval) + 1 if self.interval else 0

    def series(self, socket_id: str) -> list:
        """The socket's points of the last 15 minutes, oldest first."""
        now = self._clock()
        return [p for p in self._rings.get(socket_id, ()) if p.at >= now - WINDOW]

    def take(self, text: str) -> None:
        """Add one read (pure apart from the clock)."""
        self.add(reduce(text))

    def add(self, reading: Reading) -> None:
        now = self._clock()
        if self._last is not None:
            at, before = self._last
            dt = max(now - at, 1e-3)
            for sid, totals in reading.totals.items():
                prev = before.get(sid, [0.0] * 4)
                rates = [(v - p if v >= p else v) / dt for v, p in zip(totals, prev)]
                ring = self._rings.get(sid)
                if ring is None:
                    ring = self._rings[sid] = deque(maxlen=self.points_kept)
                ring.append(Point(now, dt, *rates))
            for sid in [s for s in self._rings if s not in reading.totals]:
                del self._rings[sid]            # its series are gone: so is the socket
        self._last = (now, reading.totals)
        self.latest = reading
        self.status = "ok"

    async def sample(self) -> None:
        try:
            raw = await self._fetch()
        except Exception as exc:        # one failed read must not stop the sampling
            self.status = "cannot read the data plane's metrics: {}".format(exc)
            return
        # Parsed off the event loop: with 10,000 sockets the text is tens of MB.
        self.add(await asyncio.to_thread(reduce, raw.decode(errors="replace")))

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if not self.interval:
            self.status = "the charts are off on this edge (--dashboard-sample-interval 0)"
            return
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
