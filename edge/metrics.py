"""The edge's metrics for operators: ``--metrics-listen HOST:PORT`` (off by default).

One ``GET /metrics`` in Prometheus text: the data plane's (``GET /metrics`` on its control
socket: traffic per socket, tunnels, certificates, what each account holds; edge/README.md
lists them) followed by the control plane's own, below.

Why it is shaped this way:
- Its own listener, never the API port nor a public front: metrics name every socket and
  account id, which is an operator's business, not a visitor's. Off unless asked for.
- Levels (accounts' sockets and tunnels against their quotas, the live nodes, whether the
  store and the data plane are up) are read from their owners at scrape time, so they never
  drift; only the API's requests are counted as they happen.
- Labels are bounded: an API route is its pattern (``/socket/{socket_id}``), never a path;
  an account is an id the store holds. The control plane's process metrics carry the prefix
  ``mysocket_edge_control_`` and the data plane's ``mysocket_edge_dataplane_``, so the two
  texts concatenate without a name twice.
"""

import logging
import time

from aiohttp import web
from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily

from .plane import DataPlane, DataPlaneError
from .version import version

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def code_class(status: int) -> str:
    return "{}xx".format(status // 100) if 100 <= status <= 599 else "other"


class ControlMetrics:
    """The control plane's metrics; ``middleware`` counts the REST API's requests."""

    def __init__(self, state, membership, plane: DataPlane, limits):
        self.plane = plane
        disable_created_metrics()      # no *_created series: Prometheus ignores them in text
        self.registry = CollectorRegistry()
        self.api_requests = Counter(
            "mysocket_edge_api_requests_total",
            "REST API requests by route pattern, method and status class.",
            ["route", "method", "code_class"], registry=self.registry)
        self.api_duration = Histogram(
            "mysocket_edge_api_request_duration_seconds", "REST API requests by route pattern.",
            ["route"], buckets=API_BUCKETS, registry=self.registry)
        self.registry.register(_Levels(state, membership, plane, limits))
        ProcessCollector(namespace="mysocket_edge_control", registry=self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        start = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
            self.api_requests.labels(route, request.method, code_class(status)).inc()
            self.api_duration.labels(route).observe(time.monotonic() - start)

    async def text(self) -> bytes:
        """The data plane's metrics, then the control plane's (without the data plane's when it
        is down: ``mysocket_edge_dataplane_up`` says so)."""
        plane = b""
        try:
            plane = await self.plane.metrics()
        except DataPlaneError as exc:
            log.warning("metrics: the data plane's are left out: %s", exc)
        return plane + generate_latest(self.registry)


class _Levels:
    """What is read at scrape time."""

    def __init__(self, state, membership, plane, limits):
        self.state, self.membership, self.plane, self.limits = state, membership, plane, limits

    def describe(self):
        return []          # collected only when scraped (never at registration)

    def collect(self):
        info = GaugeMetricFamily("mysocket_edge_info", "This node's name and version.",
                                 labels=["node", "version"])
        info.add_metric([self.membership.me.name, version()], 1)
        yield info
        yield GaugeMetricFamily("mysocket_edge_dataplane_up", "1 while the data plane runs and "
                                "has the state.", value=1 if self.plane.up else 0)
        yield GaugeMetricFamily("mysocket_edge_store_up", "1 while this node reaches the store.",
                                value=1 if self.membership.store_down_since is None else 0)
        yield GaugeMetricFamily("mysocket_edge_live_nodes", "Live nodes as this node sees them.",
                                value=len(self.membership.live_nodes()))
        sockets = GaugeMetricFamily("mysocket_edge_account_sockets",
                                    "Sockets the account has (its socket quota use).",
                                    labels=["account_id"])
        tunnels = GaugeMetricFamily("mysocket_edge_account_tunnels",
                                    "Tunnels the account has (its tunnel quota use).",
                                    labels=["account_id"])
        for user_id in list(self.state.users):
            sockets.add_metric([user_id], self.state.count_sockets_of_user(user_id))
            tunnels.add_metric([user_id], self.state.count_tunnels_of_user(user_id))
        yield sockets
        yield tunnels
        yield GaugeMetricFamily("mysocket_edge_account_sockets_limit", "The socket quota of "
                                "every account.", value=self.limits.sockets_per_account)
        yield GaugeMetricFamily("mysocket_edge_account_tunnels_limit", "The tunnel quota of "
                                "every account.", value=self.limits.tunnels_per_account)


async def serve(listen: str, metrics: ControlMetrics) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``listen`` (``host:port``); the runner, for cleanup."""
    async def get_metrics(request):
        return web.Response(body=await metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner
