"""``GET /health``: whether this node serves, for whatever spreads visitors over the nodes.

An anycast announcer (BIRD with a health check), a cloud load balancer or a
DNS health check asks each node this; 200 means "send visitors here": the
data plane runs and the node has not left the edge. A store that cannot be
reached does not make a node unhealthy (it serves from its last state, and
taking every node out at once would take every name down); the body says so,
with the live nodes as membership (edge.membership) sees them and the last
change this node applied.
"""

import time

from aiohttp import web

from .cache import State
from .membership import Membership
from .plane import DataPlane
from .version import version


def add_health_route(app: web.Application, plane: DataPlane, membership: Membership,
                     state: State) -> None:
    async def health(request):
        serving = plane.running and not membership.left
        down = membership.store_down_since
        body = {"node": membership.me.name, "version": version(), "serving": serving,
                "store": "ok" if down is None else "unreachable for {:.0f} s".format(
                    time.monotonic() - down),
                "live_nodes": [n.name for n in membership.live_nodes()],
                "change": state.seq}
        return web.json_response(body, status=200 if serving else 503)

    app.router.add_get("/health", health)
