"""``python -m edge``: parse flags, set up logging, run the edge until SIGTERM/SIGINT.

Logs go to stderr (standard logging); stdout carries only the one
``EDGE READY ...`` line, so a parent process can read it without parsing logs.
Exit status: 0 after a clean stop, 1 when the edge cannot start (e.g. a port
is taken), 2 for bad flags.
"""

import asyncio
import logging
import os
import sys

from .binary import NoBinary
from .config import parse_args
from .plane import DataPlaneError
from .run import run
from .store import StoreUnavailable, masked


def main(argv=None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    logging.basicConfig(
        level=config.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info(
        "config: api_port=%s ssh_port=%s http_port=%s listen=%s domain=%s data_dir=%s "
        "token_lifetime=%s tcp_ports=%s-%s tunnel_server=%s admin=%s https_port=%s "
        "registration=%s tls=%s api_listen=%s node=%s store=%s",
        config.api_port, config.ssh_port, config.http_port, config.listen, config.domain,
        config.data_dir, config.token_lifetime, config.tcp_ports.first,
        config.tcp_ports.last, config.tunnel_server, config.admin, config.https_port,
        config.registration, config.tls_source, config.api_listen, config.node_name,
        masked(config.store))
    try:
        asyncio.run(run(config))
    except (OSError, DataPlaneError, NoBinary, StoreUnavailable) as exc:
        logging.getLogger(__name__).error("cannot start the edge: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
