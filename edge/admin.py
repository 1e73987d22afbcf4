"""Admin endpoints under /_admin/ (only with --admin): faults, dropping SSH, live forwards.

They exist for tests, benchmarks and the demo: switch API faults on and off,
cut every SSH session at once (clients must reconnect), drop one forward (as
the edge does when a tunnel moves: by design that ends its SSH session, so the
client reconnects at once; before, the session stayed up with the forward
gone, a stale binding only an end-to-end probe noticed), and see which
forwards are connected. Without --admin none of these routes
exist (404).
"""

from aiohttp import web

from . import schema
from .faults import Faults, FaultSettings
from .plane import DataPlane


def add_admin_routes(app: web.Application, plane: DataPlane, faults: Faults) -> None:
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
        return web.json_response({"dropped": await plane.drop_ssh()})

    async def forget_forward(request):
        body = schema.json_object(await request.read())
        port = body.get("local_port")
        if isinstance(port, bool) or not isinstance(port, int):
            raise schema.BadInput("local_port must be an integer")
        return web.json_response({"forgotten": await plane.forget_forward(port)})

    async def tunnels(request):
        return web.json_response(await plane.tunnels())

    app.router.add_get("/_admin/faults", get_faults)
    app.router.add_post("/_admin/faults", post_faults)
    app.router.add_post("/_admin/drop-ssh", drop_ssh)
    app.router.add_post("/_admin/forget-forward", forget_forward)
    app.router.add_get("/_admin/tunnels", tunnels)
