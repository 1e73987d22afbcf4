"""The Mysocket REST API (aiohttp), exactly the table in shared/mysocket-api.md.

Why it is shaped this way:
- Every handler validates its whole input (edge.schema) and checks ownership
  before it writes anything; another account's ids answer 404 like unknown
  ones, so existence never leaks.
- All failures leave through one middleware (edge.apierrors) as
  ``{"error_message": ...}`` with the right status, and nothing reaches a
  handler while the data plane is not up.
- Policy (edge.policy) is asked before anything costly or lasting happens:
  rate limits on registration and login, quotas on sockets and tunnels, the
  registration policy; scrypt runs in the policy's own small thread pool.
- Reads come from this node's picture (edge.cache), never from the store, so
  they keep working while the store is away; writes go to the store
  (edge.store) and the handler answers only once this node applied its own
  change (edge.feed) and pushed it to the data plane: a new tunnel can be
  forwarded at once, and a deleted socket or tunnel loses its live SSH
  forwards and its public tcp port, so nothing keeps serving it. When the
  store cannot be reached, writes answer 503 with a clear error_message.
- Each tunnel is placed on a live node (edge.membership, edge.placement), a
  socket's tunnels on distinct nodes, and its ``tunnel_server`` says which.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from aiohttp import web

from . import hostnames, routetables, schema
from .addresses import AddressPool
from .apierrors import ApiError, json_errors, plane_gate
from .admin import add_admin_routes
from .dashboard.pages import DashboardDeps, add_dashboard_routes
from .dashboard.provider import ProviderSignIn
from .dashboard.sampler import Sampler
from .dashboard.sessions import Sessions
from .dashboard.views import Sources
from .auth import DUMMY_HASH, TokenIssuer, hash_password, verify_password
from .faults import Faults
from .health import add_health_route
from .hostkey import parse_public_key
from .names import new_dnsname
from .plane import DataPlane, DataPlaneError
from .policy import Policy
from .cache import State
from .feed import Feed
from .membership import Membership
from .hostnameclaims import Claims
from .store import DuplicateEmail, HostnameTaken, InviteUsed, NoFreeLocalPort, Socket, SqlStore, Tunnel, User
from .store.sql import IntegrityError
from .tcpports import NoFreeTcpPort, TcpPorts
from .views import socket_json, tunnel_json, user_json

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-access-token"
INVITE_USED = "this invite_token has made an account already: each token is good for one"


@dataclass
class ApiDeps:
    store: SqlStore
    state: State
    feed: Feed
    membership: Membership
    plane: DataPlane
    tokens: TokenIssuer
    tcp_front: TcpPorts
    domain: str
    policy: Policy
    faults: Optional[Faults] = None   # set only with --admin
    addresses: AddressPool = field(default_factory=AddressPool)   # --socket-addresses
    sampler: Optional[Sampler] = None         # the dashboard's traffic rings (edge.dashboard)
    sessions: Optional[Sessions] = None       # the dashboard's signed sessions
    operators: frozenset = frozenset()        # --operators: e-mails that see every account
    claims: Optional[Claims] = None     # custom hostnames (edge.hostnameclaims)
    api_name: str = ""
    provider: Optional[ProviderSignIn] = None   # the dashboard's sign-in with --oidc-issuer


def client_address(request: web.Request) -> str:
    """The visitor's address; behind the edge's own TLS front (a loopback peer),
    the one it put in X-Forwarded-For."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded.split(",")[-1].strip()
    return peer


class Api:
    def __init__(self, deps: ApiDeps):
        self._deps = deps
        self._store = deps.store
        self._state = deps.state
        self._plane = deps.plane
        self._policy = deps.policy

    # -- helpers ----------------------------------------------------------
    def _tunnel_json(self, tunnel: Tunnel, live: Optional[set] = None) -> dict:
        return tunnel_json(tunnel, self._deps.membership.tunnel_server(tunnel), live)

    async def _live_ports(self) -> Optional[set]:
        """local_ports an SSH session forwards right now, on any live node; None if the data plane
        cannot say."""
        try:
            return {t["local_port"] for t in await self._plane.tunnels(everywhere=True)}
        except DataPlaneError:
            return None

    def _socket_json(self, sock: Socket, user: User, live: Optional[set] = None,
                     tunnels: Optional[list] = None) -> dict:
        if tunnels is None:
            tunnels = self._state.tunnels_of(sock.socket_id)
        out = socket_json(sock, user, [self._tunnel_json(t, live) for t in tunnels])
        if self._deps.claims is not None:
            out["hostnames"] = self._deps.claims.view(sock)
        return out

    async def _known(self, lookup):
        """lookup() in this node's picture; on a miss, catch up with the store once and look
        again: a client behind several nodes may ask this one for what another node made a
        moment ago (its own write), and must not be told it does not exist."""
        found = lookup()
        if found is None and await self._deps.feed.refresh():
            found = lookup()
        return found

    async def _user(self, request: web.Request) -> User:
        token = request.headers.get(TOKEN_HEADER)
        if not token:
            raise ApiError(401, "missing x-access-token header")
        user_id = self._deps.tokens.user_id(token)
        user = await self._known(lambda: self._state.user_by_id(user_id)) if user_id else None
        if user is None:
            raise ApiError(401, "invalid or expired token")
        return user

    async def _owned_socket(self, request: web.Request, user: User) -> Socket:
        sock = await self._known(lambda: self._state.socket(request.match_info["socket_id"], user.user_id))
        if sock is None:
            raise ApiError(404, "socket not found")
        return sock

    async def _body(self, request: web.Request, empty_ok: bool = False) -> dict:
        return schema.json_object(await request.read(), empty_ok)

    async def _applied(self, seq: int) -> None:
        """Return once this node has applied its own write (and its data plane knows)."""
        await self._deps.feed.until(seq)

    # -- accounts ---------------------------------------------------------
    async def post_user(self, request):
        body = await self._body(request)
        fields = schema.new_user(body, lambda line: parse_public_key(line) is not None)
        invite = body.get("invite_token")
        invite = invite if isinstance(invite, str) else ""
        self._policy.registration_allowed(client_address(request), invite)
        spend = invite if self._policy.registration == "invite" else ""
        if self._state.user_by_email(fields.email):
            raise ApiError(409, "an account with this email exists already")
        password_hash = await self._policy.hash(hash_password, fields.password)
        user_id = str(uuid.uuid4())
        user = User(user_id=user_id, user_name=user_id.replace("-", ""),
                    name=fields.name, email=fields.email,
                    password_hash=password_hash, sshkey=fields.sshkey)
        try:
            seq = await self._store.add_user(user, spend)   # spends the token: one account each
        except DuplicateEmail:
            raise ApiError(409, "an account with this email exists already") from None
        except InviteUsed:
            raise ApiError(403, INVITE_USED) from None
        await self._applied(seq)
        log.info("account created: user_name=%s", user.user_name)
        return web.json_response(user_json(user))

    async def post_login(self, request):
        email, password = schema.login(await self._body(request))
        self._policy.login_allowed(client_address(request), email)
        user = await self._known(lambda: self._state.user_by_email(email))
        stored = user.password_hash if user else DUMMY_HASH
        ok = await self._policy.hash(verify_password, password, stored)
        if not (user and ok):
            self._policy.login_failed(email)
            raise ApiError(401, "wrong email or password")
        return web.json_response({"token": self._deps.tokens.issue(user.user_id)})

    async def get_user(self, request):
        user = await self._user(request)
        if request.match_info["user_id"] != user.user_id:
            raise ApiError(404, "user not found")
        return web.json_response(user_json(user))

    # -- sockets ----------------------------------------------------------
    async def get_connect(self, request):
        user = await self._user(request)
        live = await self._live_ports()
        return web.json_response(
            [self._socket_json(s, user, live) for s in self._state.sockets_of(user.user_id)])

    async def post_connect(self, request):
        return await self._create_socket(request, with_tunnel=True)

    async def post_socket(self, request):
        return await self._create_socket(request, with_tunnel=False)

    async def _create_socket(self, request, with_tunnel: bool):
        user = await self._user(request)
        body = await self._body(request)
        fields = schema.new_socket(body)
        unique = not with_tunnel and schema.unique_name(body)
        if unique:
            existing = self._named(user, self._state.socket_by_name(user.user_id, fields.name), fields)
            if existing is not None:
                return web.json_response(self._socket_json(existing, user, await self._live_ports()))
        self._policy.socket_allowed(self._state.count_sockets_of_user(user.user_id))
        if fields.socket_type == "tcp":
            self._policy.tcp_port_allowed(self._state.count_tcp_ports_of_user(user.user_id))
        if with_tunnel:
            await self._check_tunnel_quota(user)
        password_hash = ""
        if fields.protected_socket:
            password_hash = await self._policy.hash(hash_password, fields.protected_password)
        tcp_port = None
        if fields.socket_type == "tcp":
            try:
                tcp_port = await self._deps.tcp_front.open_new()
            except NoFreeTcpPort:
                raise ApiError(503, "no free public tcp port on this edge") from None
        address = ""
        if schema.own_address(body) and self._deps.addresses:
            # Taken from this node's picture: a many-node edge could hand one address out twice at the
            # same moment (not yet guarded by the store).
            address = self._deps.addresses.allocate({s.address for s in self._state.sockets.values()})
            if address is None:
                await self._deps.tcp_front.close(tcp_port)
                raise ApiError(503, "every address of this edge's --socket-addresses is in use")
        tunnels = []
        if with_tunnel:
            tunnels = [Tunnel(tunnel_id=str(uuid.uuid4()), socket_id="", local_port=0,
                              owner=schema.tunnel_owner({"owner": body.get("tunnel_owner")}),
                              node=self._deps.membership.place([]))]
        try:
            for attempt in range(3):       # a dnsname another node took at the same moment: another
                sock = self._new_socket(user, fields, tcp_port, password_hash)
                sock.address = address
                try:
                    stored, made, seq = await self._store.add_socket(sock, tunnels, unique)
                    break
                except IntegrityError:
                    if attempt == 2:
                        raise
        except NoFreeLocalPort:
            await self._deps.tcp_front.close(tcp_port)
            raise ApiError(503, "no free local_port left on this edge") from None
        except BaseException:
            await self._deps.tcp_front.close(tcp_port)
            raise
        if stored is not sock:
            # Another request (on any node) made it first: theirs it is.
            await self._deps.tcp_front.close(tcp_port)
            existing = self._named(user, stored, fields)
            return web.json_response(self._socket_json(existing, user, await self._live_ports(),
                                                       self._state.tunnels_of(existing.socket_id)))
        await self._applied(seq)
        log.info("socket created: %s type=%s user=%s", sock.dnsname, sock.socket_type,
                 user.user_name)
        return web.json_response(self._socket_json(sock, user, live=set(), tunnels=made))   # nothing forwards it yet

    def _new_socket(self, user: User, fields, tcp_port, password_hash: str) -> Socket:
        return Socket(
            socket_id=str(uuid.uuid4()), user_id=user.user_id, name=fields.name,
            dnsname=new_dnsname(self._deps.domain, self._state.dnsname_taken),
            socket_type=fields.socket_type, tcp_port=tcp_port,
            protected_socket=fields.protected_socket,
            protected_username=fields.protected_username,
            protected_password_hash=password_hash,
            cloud_authentication_enabled=fields.cloud_authentication_enabled,
            allowed_addresses=list(fields.allowed_addresses),
            allowed_domains=list(fields.allowed_domains),
            upstream_protocol=fields.upstream_protocol)

    def _named(self, user: User, sock: Optional[Socket], fields) -> Optional[Socket]:
        """The account's socket with this name (unique_name), or None; 409 if its options differ."""
        if sock is None:
            return None
        if (sock.socket_type, sock.protected_socket, sock.protected_username,
                sock.cloud_authentication_enabled) != (
                fields.socket_type, fields.protected_socket, fields.protected_username,
                fields.cloud_authentication_enabled):
            raise ApiError(409, "a socket named {!r} exists already with other options".format(fields.name))
        return sock

    async def get_socket(self, request):
        user = await self._user(request)
        live = await self._live_ports()
        return web.json_response(self._socket_json(await self._owned_socket(request, user), user, live))

    async def patch_socket(self, request):
        """Change a socket's basic auth (a rotated password keeps the name), its cloud-auth lists
        or its upstream protocol in place; only the fields the body names change."""
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        body = await self._body(request)
        protocol = schema.upstream_protocol(body) if "upstream_protocol" in body else None
        lists = None
        if any(k in body for k in schema.CLOUD_AUTH_LISTS):
            if not sock.cloud_authentication_enabled:
                raise ApiError(400, "the allowed e-mail lists are for sockets with "
                                    "cloud_authentication_enabled (create one to use them)")
            lists = schema.cloud_auth_lists(body, (sock.allowed_addresses, sock.allowed_domains))
        if (protocol is None and lists is None) or any(k in body for k in schema.PROTECTION_FIELDS):
            protected, username, password = schema.protection(body)
            if protected and sock.cloud_authentication_enabled:
                raise ApiError(400, "a socket has basic auth (protected_socket) or cloud "
                                    "authentication (visitors sign in), not both")
            password_hash = await self._policy.hash(hash_password, password) if protected else ""
            sock = await self._owned_socket(request, user)          # still there after the await?
            await self._applied(await self._store.set_protection(sock, protected, username, password_hash))
            log.info("socket protection changed: %s user=%s", sock.dnsname, user.user_name)
        if lists is not None:
            sock = await self._owned_socket(request, user)
            await self._applied(await self._store.set_allowed(sock, list(lists[0]), list(lists[1])))
            log.info("socket cloud-auth lists changed: %s (%d addresses, %d domains) user=%s",
                     sock.dnsname, len(lists[0]), len(lists[1]), user.user_name)
        if protocol is not None:
            sock = await self._owned_socket(request, user)
            await self._applied(await self._store.set_upstream_protocol(sock, protocol))
            log.info("socket upstream protocol changed: %s %s user=%s", sock.dnsname, protocol,
                     user.user_name)
        sock = await self._owned_socket(request, user)
        return web.json_response(self._socket_json(sock, user, await self._live_ports()))

    async def put_routes(self, request):
        """Set or clear a socket's route table (edge/README.md, "Route tables"): checked for shape
        and bounds here, then by the data plane (which must serve it), then stored whole."""
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        table = schema.route_table(await self._body(request))
        if table is not None:
            if sock.socket_type not in ("http", "https"):
                raise ApiError(400, "route tables are for http and https sockets")
            try:
                routetables.check(table)
                why = await self._plane.check_routes(table)
            except routetables.InvalidTable as exc:
                why = str(exc)
            if why:
                raise ApiError(422, "route table refused: " + why)
        if routetables.digest(table) != routetables.digest(sock.routes):
            await self._applied(await self._store.set_routes(sock, table))
            log.info("socket routes %s: %s user=%s", "set" if table else "cleared", sock.dnsname, user.user_name)
        sock = await self._owned_socket(request, user)
        return web.json_response(self._socket_json(sock, user, await self._live_ports()))

    async def put_hostnames(self, request):
        """Set a socket's custom hostnames (edge/README.md, "Custom hostnames"); each unproven one is
        checked at once, and the answer says per name what record proves it."""
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        names = hostnames.parse(await self._body(request), self._deps.domain, self._deps.api_name)
        for name in names:
            why = self._deps.claims.refusal(sock, name)
            if why:
                raise ApiError(409, why)
        try:
            await self._applied(await self._deps.claims.put(sock, names))
        except HostnameTaken as exc:
            raise ApiError(409, "{} is proven by another account: it cannot be claimed here".format(exc)) \
                from None
        sock = await self._owned_socket(request, user)
        log.info("socket hostnames: %s %s user=%s", sock.dnsname,
                 ",".join("{}{}".format(c["hostname"], "" if c["verified"] else "(unverified)")
                          for c in sock.hostnames) or "-", user.user_name)
        return web.json_response(self._socket_json(sock, user, await self._live_ports()))

    async def get_hostnames(self, request):
        user = await self._user(request)
        return web.json_response(self._deps.claims.view(await self._owned_socket(request, user)))

    async def delete_socket(self, request):
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        keep_for = request.query.get("unless_used_by_others")
        if keep_for is not None:
            others = [t for t in self._state.tunnels_of(sock.socket_id)
                      if not (t.owner and t.owner.startswith(keep_for))]
            if others:
                raise ApiError(409, "the socket has {} tunnel(s) of other owners".format(len(others)))
        await self._applied(await self._store.delete_socket(sock.socket_id))
        log.info("socket deleted: %s user=%s", sock.dnsname, user.user_name)
        return web.Response(status=204)

    # -- tunnels ----------------------------------------------------------
    async def _check_tunnel_quota(self, user: User) -> None:
        self._policy.tunnel_allowed(
            self._state.count_tunnels_of_user(user.user_id),
            await self._store.tunnels_created_since(user.user_id, time.time() - 3600))

    async def get_tunnels(self, request):
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        live = await self._live_ports()
        return web.json_response(
            [self._tunnel_json(t, live) for t in self._state.tunnels_of(sock.socket_id)])

    async def post_tunnel(self, request):
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        body = await self._body(request, empty_ok=True)           # the contract sends {}
        owner, backend = schema.tunnel_owner(body), schema.tunnel_backend(body)
        await self._check_tunnel_quota(user)
        try:
            tunnel, seq = await self._store.add_tunnel(
                sock, Tunnel(tunnel_id=str(uuid.uuid4()), socket_id=sock.socket_id, local_port=0,
                             owner=owner, backend=backend), place=self._deps.membership.place)
        except NoFreeLocalPort:
            raise ApiError(503, "no free local_port left on this edge") from None
        await self._applied(seq)
        log.info("tunnel created: %s local_port=%d node=%s", sock.dnsname, tunnel.local_port,
                 tunnel.node)
        return web.json_response(self._tunnel_json(tunnel, live=set()))       # nothing forwards it yet

    async def _owned_tunnel(self, request) -> Tunnel:
        user = await self._user(request)
        sock = await self._owned_socket(request, user)
        tunnel = await self._known(lambda: self._state.tunnel(sock.socket_id, request.match_info["tunnel_id"]))
        if tunnel is None:
            raise ApiError(404, "tunnel not found")
        return tunnel

    async def get_tunnel(self, request):
        tunnel = await self._owned_tunnel(request)
        return web.json_response(self._tunnel_json(tunnel, await self._live_ports()))

    async def delete_tunnel(self, request):
        tunnel = await self._owned_tunnel(request)
        await self._applied(await self._store.delete_tunnel(tunnel.tunnel_id))
        log.info("tunnel deleted: local_port=%d", tunnel.local_port)
        return web.Response(status=204)


def make_app(deps: ApiDeps) -> web.Application:
    middlewares = [json_errors, plane_gate(deps.plane)]
    if deps.faults is not None:
        middlewares.append(deps.faults.middleware)
    app = web.Application(middlewares=middlewares)
    api = Api(deps)
    app.router.add_post("/user", api.post_user)
    app.router.add_post("/login", api.post_login)
    app.router.add_get("/user/{user_id}", api.get_user)
    app.router.add_get("/connect", api.get_connect)
    app.router.add_post("/connect", api.post_connect)
    app.router.add_post("/socket", api.post_socket)
    app.router.add_get("/socket/{socket_id}", api.get_socket)
    app.router.add_delete("/socket/{socket_id}", api.delete_socket)
    app.router.add_patch("/socket/{socket_id}", api.patch_socket)
    app.router.add_put("/socket/{socket_id}/routes", api.put_routes)
    if deps.claims is not None:
        app.router.add_put("/socket/{socket_id}/hostnames", api.put_hostnames)
        app.router.add_get("/socket/{socket_id}/hostnames", api.get_hostnames)
    app.router.add_get("/socket/{socket_id}/tunnel", api.get_tunnels)
    app.router.add_post("/socket/{socket_id}/tunnel", api.post_tunnel)
    app.router.add_get("/socket/{socket_id}/tunnel/{tunnel_id}", api.get_tunnel)
    app.router.add_delete("/socket/{socket_id}/tunnel/{tunnel_id}", api.delete_tunnel)
    add_health_route(app, deps.plane, deps.membership, deps.state)
    if deps.sampler is not None and deps.sessions is not None:
        add_dashboard_routes(app, DashboardDeps(
            src=Sources(deps.state, deps.membership, deps.sampler, deps.policy.limits),
            sessions=deps.sessions, policy=deps.policy, operators=deps.operators,
            held=lambda: deps.plane.tunnels(everywhere=True), client_address=client_address,
            provider=deps.provider))
    if deps.faults is not None:
        add_admin_routes(app, deps.plane, deps.faults)
    return app
