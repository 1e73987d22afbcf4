"""How the API fails: one middleware turns every failure into ``{"error_message": ...}``.

Why it is shaped this way: handlers raise (ApiError, a policy refusal, bad
input, the store or the data plane unreachable) and never build error answers themselves,
so every failure has the same JSON shape and the right status; unknown routes
are JSON 404s, wrong methods JSON 405s, and an unexpected exception is logged
and answered with a JSON 500 (no traceback ever reaches a client). A second
middleware keeps every request away from the handlers while the data plane is
not up: 503 with Retry-After, and nothing changed.
"""

import asyncio
import logging
from typing import Optional

from aiohttp import web

from . import schema
from .plane import DataPlane, DataPlaneError
from .policy import Refused
from .store import StoreUnavailable

log = logging.getLogger(__name__)

PLANE_RETRY_AFTER = 1     # seconds; the data plane starts in well under that once built


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: Optional[dict] = None):
    return web.json_response({"error_message": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except Refused as exc:
        headers = None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(int(exc.retry_after))}
        return error_response(exc.status, exc.message, headers)
    except schema.BadInput as exc:
        return error_response(400, str(exc))
    except StoreUnavailable as exc:
        log.error("store unavailable on %s %s: %s", request.method, request.path, exc)
        return error_response(503, "the edge's database is unavailable: changes are refused until "
                                   "it is back (everything that exists keeps working); try again",
                              {"Retry-After": "5"})
    except DataPlaneError as exc:
        log.error("data plane: %s", exc)
        return error_response(503, "the edge's data plane is not available; try again",
                              {"Retry-After": str(PLANE_RETRY_AFTER)})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        message = exc.reason
        if exc.status in (404, 405):
            message = "{}: {} {}".format(
                "no such route" if exc.status == 404 else "method not allowed",
                request.method, request.path)
        return error_response(exc.status, message, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal error")


def plane_gate(plane: DataPlane):
    """A middleware that answers 503 + Retry-After while the data plane is not up
    (still starting, or being started again after it died), before any handler
    reads or writes anything: a request then changes nothing and can simply be
    retried, instead of half-happening."""
    @web.middleware
    async def gate(request: web.Request, handler):
        if not plane.up:
            return error_response(503, "the edge is starting; try again shortly",
                                  {"Retry-After": str(PLANE_RETRY_AFTER)})
        return await handler(request)
    return gate
