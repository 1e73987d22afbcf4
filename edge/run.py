"""Start every part of the edge, announce READY, stop cleanly.

Why it is shaped this way:
- Start order: the store (migrations), this node's picture of it
  (edge.feed), the files every node shares (edge.shared), the REST API
  (its port is what the data plane proxies the API's public name to), then
  the Go data plane (edge.plane), which gets the whole state and the tcp
  sockets' ports before READY. Only when all of them listen is the single
  machine-readable line printed on stdout:
  ``EDGE READY api=H:P ssh=H:P http=H:P https=H:P``. Tests start the edge
  with port 0 and read the real ports from that line.
- SIGTERM/SIGINT only set an event. Shutdown stops the data plane (which
  closes every SSH session and public connection) and gives the API one
  second for in-flight requests, so the process exits 0 promptly. A node
  of a shared store leaves the edge first (edge.membership), so its tunnels
  move at once.
"""

import asyncio
import logging
import signal
import sys

from aiohttp import web

from . import planestate, shared
from .addresses import AddressPool
from .api import ApiDeps, make_app
from .auth import TokenIssuer, load_or_create_secret
from .cache import State
from .config import EdgeConfig
from .dashboard.provider import ProviderSignIn
from .dashboard.sampler import Sampler
from .dashboard.sessions import Sessions
from .datadir import prepare_data_dir
from .faults import Faults
from .feed import Feed
from .forwards import Forwards
from .hostkey import load_or_create_host_key
from .hostcerts import HostCerts
from .hostnameclaims import Claims
from .hostnames import Checker
from .membership import Membership
from .metrics import ControlMetrics
from .metrics import serve as serve_metrics
from .plane import DataPlane, DataPlaneError, PlaneOptions
from .policy import Policy
from .sealing import Sealer, store_secret
from .store import Node, make_store
from .tcpports import TcpPorts
from .wildcard import Wildcard, WildcardConfig

log = logging.getLogger(__name__)

DB_FILE = "edge.sqlite3"


def _addr(address: tuple) -> str:
    host, port = address[:2]
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


def plane_limits(config: EdgeConfig) -> dict:
    return {"sessions_per_account": config.limits.sessions_per_account,
            "connections_per_account": config.limits.connections_per_account,
            "auth_failures_per_minute": config.limits.auth_failures_per_minute}


async def run(config: EdgeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):   # first, so an early SIGTERM is clean too
        loop.add_signal_handler(sig, stop.set)

    prepare_data_dir(config.data_dir)
    store = make_store(config.store, config.data_dir / DB_FILE,
                       local_ports=(config.local_ports.first, config.local_ports.last),
                       quarantine=config.limits.port_quarantine)
    log.info("store: %s", store.describe)
    await store.open()
    try:
        await _serve(config, store, stop)
    finally:
        await store.close()
    log.info("stopped")
    sys.stdout.flush()


async def _serve(config: EdgeConfig, store, stop: asyncio.Event) -> None:
    state = State()
    policy = Policy(config.limits, config.registration, config.invite_tokens)
    if store.shared:               # this node's files, in case it is the edge's first
        load_or_create_secret(config.data_dir)
        load_or_create_host_key(config.data_dir)
    await shared.share(store, config.data_dir, shared.KEY_FILES)
    await shared.share(store, config.data_dir, shared.CA_FILES)
    tokens = TokenIssuer(load_or_create_secret(config.data_dir), config.token_lifetime)
    sessions = Sessions(load_or_create_secret(config.data_dir), config.token_lifetime)
    host_key = load_or_create_host_key(config.data_dir)

    limits = plane_limits(config)
    ports = {"ssh": config.ssh_port, "http": config.http_port, "https": config.https_port}
    if config.dns_port is not None:  # the zone's own DNS (edge/dataplane/internal/dns)
        ports["dns"] = config.dns_port
    extra = list(config.plane_args) + ["--node-name", config.node_name]
    if store.shared:               # the link between nodes (edge/dataplane/internal/nodes)
        ports["link"] = config.link_port
        extra += ["--cluster-secret-file", config.cluster_secret_file]
    plane = DataPlane(
        PlaneOptions(listen=config.listen, ports=ports,
                     data_dir=config.data_dir, host_key=host_key, domain=config.domain,
                     api_name=config.api_name, api_upstream="", extra_args=extra),
        snapshot=lambda: dict(planestate.full_state(state), limits=limits),
        tcp_ports=lambda: sorted(state.used_tcp_ports()))
    tcp_ports = TcpPorts(plane, config.tcp_ports, state.used_tcp_ports)

    async def on_delta(delta) -> None:
        await plane.push_delta(planestate.delta_json(state, delta))
        for socket_id, sock in delta.sockets.items():
            await tcp_ports.follow(socket_id, sock.tcp_port if sock else None)

    async def on_reload() -> None:
        await plane.push()
        for sock in list(state.sockets.values()):
            await tcp_ports.follow(sock.socket_id, sock.tcp_port)

    feed = Feed(store, state, on_delta, on_reload)
    await feed.load()
    for email in sorted(config.operators - {u.email for u in state.users.values()}):
        log.warning("--operators: %s has no account yet; while registration is open, whoever "
                    "registers it first sees every account on the dashboard", email)
    me = Node(name=config.node_name, tunnel_server=config.tunnel_server,
              addresses=",".join(config.public_ips))

    async def on_live(live: list) -> None:
        try:
            await plane.set_nodes(planestate.nodes_json(me, live))
        except DataPlaneError as exc:       # it gets them again when it restarts
            log.error("data plane: cannot give it the live nodes: %s", exc)

    membership = Membership(store, state, me, on_change=on_live)
    wildcard = Wildcard(WildcardConfig(config.domain, config.acme_renew_before,
                                       config.acme_check_interval),
                        store, plane, membership,
                        Sealer(store_secret(config.data_dir, config.cluster_secret_file))) \
        if config.acme_wildcard else None
    forwards = Forwards(plane, store, state, feed, me.name)
    sampler = Sampler(plane.metrics, config.dashboard_sample_interval)
    hostcerts = HostCerts(store, state, plane, membership, Sealer(store_secret(config.data_dir,
                                                                                config.cluster_secret_file)),
                          config.acme_renew_before) if "--acme-directory" in config.plane_args else None
    claims = Claims(store, feed, Checker(config.hostname_resolver), load_or_create_secret(config.data_dir),
                    membership, config.hostname_check_interval)
    deps = ApiDeps(store=store, state=state, feed=feed, membership=membership, plane=plane,
                   tokens=tokens, tcp_front=tcp_ports, domain=config.domain, policy=policy,
                   faults=Faults(config.faults) if config.admin else None,
                   addresses=AddressPool(config.socket_addresses), claims=claims,
                   api_name=config.api_name,
                   sampler=sampler, sessions=sessions, operators=config.operators,
                   provider=ProviderSignIn(config.oidc_issuer, config.api_name, plane.signin_keys)
                   if config.oidc_issuer else None)
    app = make_app(deps)
    metrics = ControlMetrics(state, membership, plane, config.limits) \
        if config.metrics_listen else None
    if metrics is not None:        # outermost: it sees the answer every other middleware made
        app.middlewares.insert(0, metrics.middleware)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    metrics_runner = None
    site = web.TCPSite(runner, config.api_listen, config.api_port)
    await site.start()
    api_addr = _addr(runner.addresses[0])
    me.api = api_addr
    plane.options.api_upstream = "127.0.0.1:{}".format(runner.addresses[0][1]) \
        if config.api_listen in ("0.0.0.0", "::", "") else api_addr
    try:
        await plane.start()
        if await shared.share(store, config.data_dir, shared.CA_FILES):
            await plane.restart()           # another node's CA won: serve with that one
        for sock in state.sockets.values():
            tcp_ports.started(sock.socket_id, sock.tcp_port)
        if "link" in plane.ports:
            me.link = "{}:{}".format(config.tunnel_server, plane.ports["link"])
        feed.start()
        await membership.start()
        await on_live(membership.live_nodes())     # one node: itself, for its DNS
        forwards.start()
        sampler.start()
        claims.start()
        if hostcerts is not None:
            hostcerts.start()
        if wildcard is not None:
            await wildcard.start()
        if metrics is not None:
            metrics_runner = await serve_metrics(config.metrics_listen, metrics)
    except BaseException:
        await sampler.stop()
        if wildcard is not None:
            await wildcard.stop()
        if hostcerts is not None:
            await hostcerts.stop()
        await claims.stop()
        await forwards.stop()
        await membership.stop()
        await feed.stop()
        await plane.stop()
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        raise
    ports = plane.ports
    host = config.listen
    addrs = {k: _addr((host, v)) for k, v in ports.items()}
    log.info("edge up: node=%s api=%s ssh=%s http=%s https=%s domain=%s admin=%s data_dir=%s",
             me.name, api_addr, addrs["ssh"], addrs["http"], addrs["https"], config.domain,
             config.admin, config.data_dir)
    log.info("TLS: %s; the internal CA's root certificate is %s (clients that should trust "
             "this edge's own certificates trust that file)", config.tls_source,
             config.data_dir / "ca.crt")
    metrics_addr = _addr(metrics_runner.addresses[0]) if metrics_runner is not None else ""
    if metrics_addr:
        log.info("metrics: GET http://%s/metrics", metrics_addr)
    print("EDGE READY api={} ssh={} http={} https={}{}{}".format(
        api_addr, addrs["ssh"], addrs["http"], addrs["https"],
        " dns=" + addrs["dns"] if "dns" in addrs else "",
        " metrics=" + metrics_addr if metrics_addr else ""), flush=True)

    await stop.wait()

    log.info("stopping")
    await sampler.stop()
    if wildcard is not None:
        await wildcard.stop()
    if hostcerts is not None:
        await hostcerts.stop()
    await claims.stop()
    await forwards.stop()
    await membership.stop()
    await feed.stop()
    await plane.stop()
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    policy.close()
