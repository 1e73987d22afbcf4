"""Start every part of the edge, announce READY, stop cleanly.

Why it is shaped this way:
- Start order: state (database, token secret, SSH host key), the REST API
  (its port is what the data plane proxies the API's public name to), then
  the Go data plane (edge.plane), which gets the whole state and the tcp
  sockets' ports before READY. Only when all of them listen is the single
  machine-readable line printed on stdout:
  ``EDGE READY api=H:P ssh=H:P http=H:P https=H:P``. Tests start the edge
  with port 0 and read the real ports from that line.
- SIGTERM/SIGINT only set an event. Shutdown stops the data plane (which
  closes every SSH session and public connection) and gives the API one
  second for in-flight requests, so the process exits 0 promptly.
"""

import asyncio
import logging
import signal
import sys

from aiohttp import web

from .api import ApiDeps, make_app
from .auth import TokenIssuer, load_or_create_secret
from .config import EdgeConfig
from .datadir import prepare_data_dir
from .faults import Faults
from .hostkey import load_or_create_host_key
from .plane import DataPlane, PlaneOptions
from .policy import Policy
from .store import Store
from .tcpports import TcpPorts

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
    store = Store(config.data_dir / DB_FILE,
                  local_ports=(config.local_ports.first, config.local_ports.last),
                  quarantine=config.limits.port_quarantine)
    policy = Policy(config.limits, config.registration, config.invite_tokens)
    tokens = TokenIssuer(load_or_create_secret(config.data_dir), config.token_lifetime)
    host_key = load_or_create_host_key(config.data_dir)

    limits = plane_limits(config)
    plane = DataPlane(
        PlaneOptions(listen=config.listen,
                     ports={"ssh": config.ssh_port, "http": config.http_port,
                            "https": config.https_port},
                     data_dir=config.data_dir, host_key=host_key, domain=config.domain,
                     api_name=config.api_name, api_upstream="", extra_args=config.plane_args),
        snapshot=lambda: dict(store.dataplane_state(), limits=limits),
        tcp_ports=lambda: sorted(store.used_tcp_ports()))
    tcp_ports = TcpPorts(plane, config.tcp_ports, store.used_tcp_ports)
    deps = ApiDeps(store=store, plane=plane, tokens=tokens, tcp_front=tcp_ports,
                   domain=config.domain, tunnel_server=config.tunnel_server, policy=policy,
                   faults=Faults(config.faults) if config.admin else None)
    runner = web.AppRunner(make_app(deps), handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.api_listen, config.api_port)
    await site.start()
    api_addr = _addr(runner.addresses[0])
    plane.options.api_upstream = "127.0.0.1:{}".format(runner.addresses[0][1]) \
        if config.api_listen in ("0.0.0.0", "::", "") else api_addr
    try:
        await plane.start()
    except BaseException:
        await plane.stop()
        await runner.cleanup()
        raise
    ports = plane.ports
    host = config.listen
    addrs = {k: _addr((host, v)) for k, v in ports.items()}
    log.info("edge up: api=%s ssh=%s http=%s https=%s domain=%s admin=%s data_dir=%s",
             api_addr, addrs["ssh"], addrs["http"], addrs["https"], config.domain, config.admin,
             config.data_dir)
    log.info("TLS: %s; the internal CA's root certificate is %s (clients that should trust "
             "this edge's own certificates trust that file)", config.tls_source,
             config.data_dir / "ca.crt")
    print("EDGE READY api={} ssh={} http={} https={}".format(
        api_addr, addrs["ssh"], addrs["http"], addrs["https"]), flush=True)

    await stop.wait()

    log.info("stopping")
    await plane.stop()
    await runner.cleanup()
    policy.close()
    store.close()
    log.info("stopped")
    sys.stdout.flush()
