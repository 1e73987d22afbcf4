"""The public HTTP front: route by Host to a socket's tunnels, then splice.

Why it is shaped this way:
- Routing is per TCP connection, not per request: the front reads the first
  request head, picks the socket by its ``Host`` (port stripped), checks basic
  auth for protected sockets, opens a channel to one of the socket's connected
  tunnels (round-robin over NEW connections) and from then on copies bytes
  untouched. Later requests on a keep-alive connection therefore go to the
  same socket and tunnel as the first one, whatever their Host header says,
  and are not re-checked for basic auth (the connection already proved it
  knows the socket's password). This keeps the front a byte pipe: WebSockets,
  chunked bodies and HTTP/1.0 all just work, and nothing is rewritten.
- The front answers by itself only before a tunnel is chosen, always with a
  short plain-text body and ``Connection: close``: 400 bad request head,
  404 unknown host, 421 a tcp socket's name, 401 missing/wrong basic auth,
  501 https/tls sockets and cloud authentication (not implemented here; the
  edge fails closed rather than serving such a socket unprotected), 502 no
  connected tunnel or none could reach its target.
- Protected-socket passwords are scrypt hashes; a successful check is cached
  in memory so keep-alive-less clients do not pay scrypt per connection.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Optional

from .auth import verify_password
from .forwards import NoTunnel
from .splice import splice, track_current_task
from .state import EdgeState
from .store import Socket

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
_AUTH_CACHE_MAX = 4096

_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            408: "Request Timeout", 421: "Misdirected Request",
            431: "Request Header Fields Too Large", 501: "Not Implemented",
            502: "Bad Gateway"}


@dataclass
class RequestHead:
    method: str
    target: str
    headers: dict   # lower-cased name -> first value

    @property
    def host(self) -> Optional[str]:
        return host_without_port(self.headers.get("host", ""))


def parse_head(raw: bytes) -> Optional[RequestHead]:
    """The request line and headers of raw (ending in CRLFCRLF), or None if malformed."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:   # pragma: no cover - latin-1 decodes anything
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.setdefault(name.lower(), value.strip())
    return RequestHead(parts[0], parts[1], headers)


def host_without_port(host: str) -> Optional[str]:
    """'Foo.Example:8000' -> 'foo.example'; '[::1]:80' -> '::1'; '' -> None."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else ""
    elif host.count(":") == 1:
        host = host.split(":")[0]
    host = host.rstrip(".")
    return host or None


def basic_credentials(header: str) -> Optional[tuple]:
    """(username, password) from an 'Authorization: Basic ...' value, or None."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def plain_response(status: int, text: str, extra_headers: tuple = ()) -> bytes:
    body = (text + "\n").encode()
    head = ["HTTP/1.1 {} {}".format(status, _REASONS.get(status, "Error")),
            "Content-Type: text/plain; charset=utf-8",
            "Content-Length: {}".format(len(body)), "Connection: close"]
    head += list(extra_headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class HttpFront:
    def __init__(self, state: EdgeState):
        self._store = state.store
        self._registry = state.registry
        self._tasks = state.tasks
        self._auth_ok: set = set()

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        return await asyncio.start_server(self.handle, host, port, limit=MAX_HEAD)

    async def handle(self, reader, writer) -> None:
        with track_current_task(self._tasks):
            try:
                await self._serve(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except asyncio.CancelledError:
                # Shutdown cancels live connections. End quietly: Python 3.11's
                # start_server logs a cancelled handler task as an error.
                pass
            finally:
                writer.close()

    async def _answer(self, writer, status: int, text: str, extra: tuple = ()) -> None:
        writer.write(plain_response(status, text, extra))
        await writer.drain()

    async def _serve(self, reader, writer) -> None:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.TimeoutError:
            return await self._answer(writer, 408, "request head not received in time")
        except asyncio.LimitOverrunError:
            return await self._answer(writer, 431, "request head too large")
        head = parse_head(raw)
        if head is None or head.host is None:
            return await self._answer(writer, 400, "malformed request or no Host header")
        sock = self._store.socket_by_dnsname(head.host)
        refusal = await self._refusal(sock, head)
        if refusal is not None:
            return await self._answer(writer, *refusal)
        ports = [t.local_port for t in self._store.tunnels_of(sock.socket_id)]
        try:
            tunnel = await self._registry.open_channel(
                sock.socket_id, ports, writer.get_extra_info("peername") or ("", 0))
        except NoTunnel as exc:
            return await self._answer(writer, 502, "{}: {}".format(head.host, exc))
        await splice((reader, writer), tunnel, first=raw)

    async def _refusal(self, sock: Optional[Socket], head: RequestHead) -> Optional[tuple]:
        """(status, text[, headers]) when the front must answer itself, else None."""
        if sock is None:
            return 404, "no socket named {}".format(head.host)
        if sock.socket_type == "tcp":
            return 421, "{} is a tcp socket: connect to port {}".format(
                sock.dnsname, sock.tcp_port)
        if sock.socket_type in ("https", "tls"):
            return 501, "{} sockets are not implemented by this edge yet".format(
                sock.socket_type)
        if sock.cloud_authentication_enabled:
            return 501, "cloud authentication is not implemented by this edge"
        if sock.protected_socket and not await self._authorized(sock, head):
            return (401, "this socket needs a username and password",
                    ('WWW-Authenticate: Basic realm="{}", charset="UTF-8"'.format(
                        sock.dnsname),))
        return None

    async def _authorized(self, sock: Socket, head: RequestHead) -> bool:
        creds = basic_credentials(head.headers.get("authorization", ""))
        if creds is None:
            return False
        user, password = creds
        if not hmac.compare_digest(user.encode(), sock.protected_username.encode()):
            return False
        key = hashlib.sha256("\0".join(
            (sock.socket_id, sock.protected_password_hash, password)).encode()).digest()
        if key in self._auth_ok:
            return True
        ok = await asyncio.to_thread(verify_password, password, sock.protected_password_hash)
        if ok:
            if len(self._auth_ok) >= _AUTH_CACHE_MAX:
                self._auth_ok.clear()
            self._auth_ok.add(key)
        return ok
