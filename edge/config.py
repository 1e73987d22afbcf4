"""Command-line flags of ``python -m edge``, each with an EDGE_* env-var fallback.

Pure: ``parse_args(argv, environ)`` returns an ``EdgeConfig`` or exits with a
usage error, so it is tested without starting anything. A flag given on the
command line wins over its environment variable, which wins over the default.
"""

import argparse
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from .faults import FaultSettings
from .tcpfront import PortRange


@dataclass
class EdgeConfig:
    api_port: int
    ssh_port: int
    http_port: int
    domain: str
    data_dir: Path
    listen: str
    token_lifetime: float
    tcp_ports: PortRange
    admin: bool
    log_level: str
    tunnel_server: str
    faults: FaultSettings


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535 (0 = any free port)")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _range(text: str) -> PortRange:
    try:
        return PortRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _truthy(text: Optional[str]) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edge",
        description="A Mysocket-compatible edge on one machine: REST API, SSH server "
                    "for reverse tunnels, HTTP and TCP front. Every flag can also be "
                    "set by the environment variable named in brackets.")

    def add(flag, default, help_text, **kw):
        var = "EDGE_" + flag.lstrip("-").upper().replace("-", "_")
        p.add_argument(flag, default=env.get(var, default),
                       help="{} [{}] (default: %(default)s)".format(help_text, var), **kw)

    add("--api-port", "8080", "port of the REST API; 0 = any free port", type=_port)
    add("--ssh-port", "2222", "port of the SSH server; 0 = any free port", type=_port)
    add("--http-port", "8000", "port of the public HTTP front; 0 = any free port",
        type=_port)
    add("--domain", "edge.localhost", "domain under which socket dnsnames are generated")
    add("--data-dir", "./edge-data", "directory for the database, the SSH host key and "
        "the token signing secret", type=Path)
    add("--listen", "127.0.0.1", "address every port listens on")
    add("--token-lifetime", "3600", "lifetime of API tokens in seconds", type=_positive)
    add("--tcp-ports", "20000-20999", "public ports for tcp sockets: a range A-B, or 0 "
        "to let the OS choose", type=_range)
    add("--tunnel-server", "", "SSH host name put in tunnels' tunnel_server (default: the "
        "--listen address, or --domain when listening on a wildcard address)")
    add("--log-level", "INFO", "DEBUG, INFO, WARNING or ERROR",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    p.add_argument("--admin", action="store_true", default=_truthy(env.get("EDGE_ADMIN")),
                   help="enable /_admin/ endpoints (faults, drop-ssh, tunnels) and the "
                        "--fault-* flags; for tests only [EDGE_ADMIN]")
    add("--fault-error-rate", "0", "share of API requests answered with --fault-status",
        type=float)
    add("--fault-status", "500", "status of injected errors (e.g. 500, 429)", type=int)
    add("--fault-retry-after", "", "Retry-After seconds sent with injected errors")
    add("--fault-latency", "0", "seconds added to every API request", type=float)
    add("--fault-timeout-rate", "0", "share of API requests held until the client "
        "gives up", type=float)
    return p


def _default_tunnel_server(listen: str, domain: str) -> str:
    try:
        wildcard = ipaddress.ip_address(listen).is_unspecified
    except ValueError:
        wildcard = listen == ""
    return domain if wildcard else listen


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> EdgeConfig:
    parser = build_parser(env)
    a = parser.parse_args(list(argv))
    fault_fields = {"error_rate": a.fault_error_rate, "status": a.fault_status,
                    "latency": a.fault_latency, "timeout_rate": a.fault_timeout_rate}
    if a.fault_retry_after not in ("", None):
        fault_fields["retry_after"] = float(a.fault_retry_after)
    try:
        faults = FaultSettings.from_json(fault_fields)
    except ValueError as exc:
        parser.error(str(exc))
    if faults != FaultSettings(status=faults.status) and not a.admin:
        parser.error("--fault-* flags need --admin")
    domain = a.domain.strip().lower().rstrip(".")
    return EdgeConfig(
        api_port=a.api_port, ssh_port=a.ssh_port, http_port=a.http_port,
        domain=domain, data_dir=a.data_dir, listen=a.listen,
        token_lifetime=a.token_lifetime, tcp_ports=a.tcp_ports, admin=a.admin,
        log_level=a.log_level,
        tunnel_server=a.tunnel_server or _default_tunnel_server(a.listen, domain),
        faults=faults)
