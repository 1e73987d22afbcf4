"""Admin endpoints under /_admin/ (only with --admin): faults, dropping SSH, live forwards.

They exist for tests, benchmarks and the demo: switch API faults on and off,
cut every SSH session at once (clients must reconnect), forget one forward
while its SSH session stays up (a stale binding: the client sees nothing
wrong, the public side answers 502, which only an end-to-end probe notices),
and see which forwards are connected. Without --admin none of these routes
exist (404).
"""

import datetime

from aiohttp import web

from . import schema
from .faults import Faults, FaultSettings
from .state import EdgeState


def add_admin_routes(app: web.Application, state: EdgeState, faults: Faults) -> None:
    async def get_faults(request):
        return web.json_response(faults.settings.to_json())

    async def post_faults(request):
        body = schema.json_object(await request.read(), empty_ok=True)
        try:
            faults.settings = FaultSettings.from_json(body)
        except (ValueError, TypeError) as exc:
            raise schema.BadInput(str(exc)) from None
        return web.json_response(faults.settings.to_json())

    async def drop_ssh(request):
        connections = list(state.ssh_connections)
        for conn in connections:
            conn.close()
        return web.json_response({"dropped": len(connections)})

    async def forget_forward(request):
        body = schema.json_object(await request.read())
        port = body.get("local_port")
        if isinstance(port, bool) or not isinstance(port, int):
            raise schema.BadInput("local_port must be an integer")
        forwards = [f for f in state.registry.all() if f.local_port == port]
        for forward in forwards:
            state.registry.remove(forward)
        return web.json_response({"forgotten": len(forwards)})

    async def tunnels(request):
        return web.json_response([
            {"local_port": f.local_port, "user_name": f.user_name, "dnsname": f.dnsname,
             "since": datetime.datetime.fromtimestamp(
                 f.since, datetime.timezone.utc).isoformat()}
            for f in state.registry.all()])

    app.router.add_get("/_admin/faults", get_faults)
    app.router.add_post("/_admin/faults", post_faults)
    app.router.add_post("/_admin/drop-ssh", drop_ssh)
    app.router.add_post("/_admin/forget-forward", forget_forward)
    app.router.add_get("/_admin/tunnels", tunnels)
