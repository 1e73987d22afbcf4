"""Start every part of the edge on one event loop, announce READY, stop cleanly.

Why it is shaped this way:
- Start order: state (database, secret, host key), then the tcp sockets'
  ports, the SSH server, the HTTP front and the API. Only when all of them
  listen is the single machine-readable line printed on stdout:
  ``EDGE READY api=H:P ssh=H:P http=H:P``. Tests start the edge with port 0
  and read the real ports from that line.
- SIGTERM/SIGINT only set an event. Shutdown then stops accepting, closes
  every SSH session, cancels every spliced public connection and gives the
  API one second for in-flight requests, so the process exits 0 promptly.
"""

import asyncio
import logging
import signal
import sys

from aiohttp import web

from .api import ApiDeps, make_app
from .auth import TokenIssuer, load_or_create_secret
from .config import EdgeConfig
from .faults import Faults
from .front import HttpFront
from .sshd import load_or_create_host_key, start_ssh_server
from .state import EdgeState
from .store import Store
from .tcpfront import TcpFront

log = logging.getLogger(__name__)

DB_FILE = "edge.sqlite3"


def _addr(address: tuple) -> str:
    host, port = address[:2]
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


async def run(config: EdgeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):   # first, so an early SIGTERM is clean too
        loop.add_signal_handler(sig, stop.set)

    config.data_dir.mkdir(parents=True, exist_ok=True)
    state = EdgeState(store=Store(config.data_dir / DB_FILE))
    tokens = TokenIssuer(load_or_create_secret(config.data_dir), config.token_lifetime)
    host_key = load_or_create_host_key(config.data_dir)

    tcp_front = TcpFront(state, config.listen, config.tcp_ports)
    await tcp_front.start_existing()
    ssh_server = await start_ssh_server(state, config.listen, config.ssh_port, host_key)
    http_server = await HttpFront(state).start(config.listen, config.http_port)
    deps = ApiDeps(state=state, tokens=tokens, tcp_front=tcp_front, domain=config.domain,
                   tunnel_server=config.tunnel_server,
                   faults=Faults(config.faults) if config.admin else None)
    runner = web.AppRunner(make_app(deps), handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.listen, config.api_port)
    await site.start()

    api_addr = _addr(runner.addresses[0])
    ssh_addr = _addr(ssh_server.sockets[0].getsockname())
    http_addr = _addr(http_server.sockets[0].getsockname())
    log.info("edge up: api=%s ssh=%s http=%s domain=%s admin=%s data_dir=%s",
             api_addr, ssh_addr, http_addr, config.domain, config.admin, config.data_dir)
    print("EDGE READY api={} ssh={} http={}".format(api_addr, ssh_addr, http_addr),
          flush=True)

    await stop.wait()

    log.info("stopping")
    ssh_server.close()
    http_server.close()
    await tcp_front.stop()
    for conn in list(state.ssh_connections):
        conn.close()
    for task in list(state.tasks):
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)
    await runner.cleanup()
    state.store.close()
    log.info("stopped")
    sys.stdout.flush()

