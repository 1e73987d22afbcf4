"""Command-line flags of ``python -m edge``, each with an EDGE_* env-var fallback.

Pure: ``parse_args(argv, environ)`` returns an ``EdgeConfig`` or exits with a
usage error, so it is tested without starting anything. A flag given on the
command line wins over its environment variable, which wins over the default.
"""

import argparse
import ipaddress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Optional, Sequence

from . import signin
from .addresses import check_spec
from .faults import FaultSettings
from .store.url import is_postgres
from .tcpports import PortRange
from .version import version

REGISTRATION_POLICIES = ("open", "closed", "invite")


@dataclass
class Limits:
    """Quotas per account and rate limits (see edge/README.md, "Limits").

    Sized for mysocketd, the client this edge serves most: one SSH session and one tunnel per
    exposed Service and replica (two replicas by default), a pool adding its members' tunnels.
    """
    sockets_per_account: int = 1000
    tunnels_per_account: int = 4000
    tunnel_creates_per_hour: int = 10000
    sessions_per_account: int = 2000
    connections_per_account: int = 1000
    port_quarantine: float = 3600.0
    login_failures_per_minute: float = 5.0
    logins_per_minute_per_address: float = 30.0
    registrations_per_hour_per_address: float = 10.0
    auth_failures_per_minute: float = 20.0
    tcp_ports_per_account: int = 100        # a tenth of the default --tcp-ports range


def _bound(default, text):
    return field(default=default, metadata={"help": text})


@dataclass
class Bounds:
    """What one visitor may hold and for how long, in the data plane (edge/README.md, "Limits").

    Each is a flag of its own name (an EDGE_* variable too) handed to the Go data plane;
    timeouts are seconds of no progress, never totals, and 0 switches one off.
    """
    head_timeout: float = _bound(10.0, "seconds for a request head (or a TLS ClientHello) "
                                       "to arrive")
    body_read_timeout: float = _bound(15.0, "seconds a request body may go without a byte "
                                            "(408 timeout); a slow upload that moves is never cut")
    response_header_timeout: float = _bound(100.0, "seconds for the app to begin its answer "
                                                   "(504 timeout)")
    idle_timeout: float = _bound(60.0, "seconds a keep-alive connection may wait for its next "
                                       "request")
    send_timeout: float = _bound(60.0, "seconds a visitor may leave each write of an answer "
                                       "untaken (one who stops reading holds nothing for long)")
    upgrade_idle_timeout: float = _bound(300.0, "seconds an upgraded (WebSocket) connection may "
                                                "go without a byte either way")
    splice_idle_timeout: float = _bound(600.0, "seconds a tls passthrough or tcp connection may "
                                               "go without a byte either way")
    ssh_handshake_timeout: float = _bound(10.0, "seconds for an SSH connection to log in")
    visitor_share: float = _bound(0.05, "share of --connections-per-account one visitor (an "
                                        "address; an IPv6 /64) may hold, and of the password "
                                        "checks that fit in --auth-check-memory (at least 1)")
    conns_per_visitor: int = _bound(256, "open public connections (HTTP, HTTPS, TCP) one visitor "
                                         "may hold")
    ssh_preauth_per_address: int = _bound(64, "SSH connections not logged in yet, per address")
    ssh_preauth_total: int = _bound(1024, "SSH connections not logged in yet, in all (more wait "
                                          "in the listen backlog)")
    auth_check_memory: int = _bound(128, "MiB of scrypt password checks at once (16 MiB each; "
                                         "more are shed with 503 unavailable)")
    h2_max_streams: int = _bound(100, "concurrent HTTP/2 streams per visitor connection, each also "
                                      "one of the account's concurrent requests")

    def plane_args(self) -> list:
        """The same, as the data plane's flags."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            out += ["--" + f.name.replace("_", "-"),
                    "{}s".format(value) if f.name.endswith("_timeout") else str(value)]
        return out


@dataclass
class EdgeConfig:
    api_port: int
    ssh_port: int
    http_port: int
    https_port: int
    domain: str
    api_name: str
    api_listen: str
    data_dir: Path
    listen: str
    token_lifetime: float
    tcp_ports: PortRange
    admin: bool
    log_level: str
    tunnel_server: str
    faults: FaultSettings
    local_ports: PortRange
    registration: str
    invite_tokens: frozenset
    limits: Limits
    plane_args: list
    tls_source: str
    store: str = ""
    node_name: str = ""
    link_port: int = 0
    cluster_secret_file: str = ""
    socket_addresses: str = ""
    dns_port: Optional[int] = None      # the zone's own DNS on --listen (None: none)
    public_ips: tuple = ()              # this node's addresses in the DNS answers
    acme_wildcard: bool = False         # one certificate for the zone by DNS-01 (edge.wildcard)
    acme_renew_before: float = 2592000.0
    acme_check_interval: float = 3600.0
    operators: frozenset = frozenset()  # e-mails of the accounts that see every account (dashboard)
    dashboard_sample_interval: float = 10.0
    oidc_issuer: str = ""               # --oidc-issuer: the dashboard offers a sign-in with it
    metrics_listen: str = ""            # host:port of GET /metrics for operators ("": none)
    hostname_resolver: str = ""         # host:port asked for custom names' proofs ("": the system's)
    hostname_check_interval: float = 300.0


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


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = none)")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be a share from 0 to 1")
    return value


def _range(text: str) -> PortRange:
    try:
        return PortRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_port(text: str) -> str:
    if text == "":
        return ""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("must be HOST:PORT, such as 127.0.0.1:9464 "
                                         "([::1]:9464 for IPv6)")
    return text


def _truthy(text: Optional[str]) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edge",
        description="A Mysocket-compatible edge on one machine: REST API, SSH server "
                    "for reverse tunnels, HTTP and TCP front. Every flag can also be "
                    "set by the environment variable named in brackets.")
    p.add_argument("--version", action="version", version=f"mysocketd edge {version()}")

    def add(flag, default, help_text, **kw):
        var = "EDGE_" + flag.lstrip("-").upper().replace("-", "_")
        p.add_argument(flag, default=env.get(var, default),
                       help="{} [{}] (default: %(default)s)".format(help_text, var), **kw)

    add("--api-port", "8080", "port of the REST API; 0 = any free port", type=_port)
    add("--ssh-port", "2222", "port of the SSH server; 0 = any free port", type=_port)
    add("--http-port", "8000", "port of the public HTTP front; 0 = any free port",
        type=_port)
    add("--https-port", "8443", "port of the public HTTPS/TLS front; 0 = any free port",
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
    add("--api-listen", "", "address of the plain-HTTP API port (default: --listen when "
        "that is a loopback address, else 127.0.0.1: on a public address the API answers "
        "on TLS only, as --api-name on the HTTPS port)")
    add("--api-name", "", "public name of the REST API on the HTTPS port (default: "
        "api.<domain>)")
    add("--store", "", "where the edge's state lives: empty for the embedded SQLite file in "
        "--data-dir (one node), or a PostgreSQL URL (postgresql://user:pass@host/db) that "
        "every node of a many-node edge shares")
    add("--node-name", "", "this node's name among the edge's nodes, unique and stable "
        "(default: its --tunnel-server)")
    add("--link-port", "2223", "port of the link between nodes (with --store postgresql://...; "
        "0 = any free port)", type=_port)
    add("--cluster-secret-file", "", "file holding the secret every node of the edge shares "
        "for the link between nodes (required with --store postgresql://...)")
    add("--metrics-listen", "", "host:port where GET /metrics serves the edge's Prometheus "
        "metrics (the data plane's traffic, tunnels, certificates and quota use, and the "
        "control plane's); port 0 = any free port; empty = none. Never a public front: put it "
        "on an address only the monitoring reaches", type=_host_port)
    add("--socket-addresses", "", "addresses this edge owns and listens on (a CIDR such as "
        "203.0.113.16/28, or addresses separated by commas) that sockets created with own_address "
        "get one each: a Gateway's address, routed whatever the Host (empty: none)")
    add("--dns-port", "", "port of the zone's own authoritative DNS (UDP and TCP) on --listen: "
        "53 on a public edge the zone is delegated to; empty = no DNS; 0 = any free port")
    add("--public-ip", "", "this node's public addresses in the edge's DNS answers, "
        "comma-separated (default: --listen when it is one address, else --tunnel-server when "
        "it is an address)")
    add("--dns-ns", "", "the zone's name servers, comma-separated, as the parent zone "
        "delegates it (default: ns1.<domain>,ns2.<domain>, which answer with the live nodes)")
    add("--dns-ttl", "30", "seconds DNS answers may be cached: how long a dead node may "
        "still be given out", type=_positive)
    add("--dns-answers-per-minute", "1200", "UDP DNS answers per source address (IPv6: its "
        "/64) per minute; 0 = no limit", type=float)
    add("--local-ports", "10000-65535", "tunnel local_port numbers handed out (a range A-B)",
        type=_range)
    add("--tls-cert", "", "a given certificate (PEM; e.g. a wildcard for *.<domain>) used "
        "for every name it covers")
    add("--tls-key", "", "the private key of --tls-cert (PEM)")
    add("--acme-directory", "", "ACME directory URL (e.g. Let's Encrypt's); certificates "
        "for the other names come from there by HTTP-01 (the HTTP port must be port 80 "
        "as the CA sees it)")
    add("--acme-email", "", "contact e-mail of the ACME account")
    add("--acme-ca", "", "PEM file trusted for the ACME server's own HTTPS (a private CA)")
    add("--acme-renew-before", "2592000", "renew ACME certificates with less than this "
        "many seconds left", type=_positive)
    add("--acme-check-interval", "3600", "seconds between renewal checks", type=_positive)
    add("--hostname-resolver", "", "host:port of the DNS resolver asked for the proof of a "
        "custom hostname (CNAME or TXT); default: the system's resolvers")
    add("--hostname-check-interval", "300", "seconds between checks of every custom "
        "hostname's proof (a name whose proof is gone stops being served)", type=_positive)
    add("--registration", "", "who may create accounts with POST /user: open, closed or "
        "invite (an invite_token from --invite-tokens-file); default: open on a loopback "
        "--listen, closed otherwise", choices=["", *REGISTRATION_POLICIES])
    add("--invite-tokens-file", "", "file with one invite token per line (for "
        "--registration invite)")
    add("--keepalive-interval", "1", "seconds between the SSH server's keepalives",
        type=_positive)
    add("--keepalive-count", "3", "unanswered keepalive intervals after which a session is "
        "closed", type=int)
    add("--open-timeout", "1", "seconds a tunnel gets to open a channel while another "
        "tunnel of the socket is left to try", type=_positive)
    for f in fields(Limits):
        add("--" + f.name.replace("_", "-"), str(f.default), "limit: " + f.name.replace(
            "_", " ") + " (0 = none)", type=float)
    for f in fields(Bounds):
        add("--" + f.name.replace("_", "-"), str(f.default), f.metadata["help"] + " (0 = none)",
            type=_share if f.name == "visitor_share" else _not_negative)
    signin.add_flags(add)
    add("--operators", "", "e-mail addresses (comma-separated) of the accounts that see every "
        "account on the dashboard (https://<api-name>/dashboard/); each signs in with its own "
        "password")
    add("--dashboard-sample-interval", "10", "seconds between two reads of the data plane's "
        "metrics for the dashboard's charts (15 minutes are kept per socket); 0 = no charts",
        type=_not_negative)
    add("--log-level", "INFO", "DEBUG, INFO, WARNING or ERROR",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    p.add_argument("--admin", action="store_true", default=_truthy(env.get("EDGE_ADMIN")),
                   help="enable /_admin/ endpoints (faults, drop-ssh, tunnels) and the "
                        "--fault-* flags; for tests only, and refused unless --listen and "
                        "--api-listen are loopback addresses [EDGE_ADMIN]")
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


def _public_ips(text: str, listen: str, tunnel_server: str) -> tuple:
    """The addresses the edge's DNS gives for this node: given, or the one it listens on."""
    given = [a.strip() for a in text.split(",") if a.strip()]
    for a in given:
        ipaddress.ip_address(a)              # ValueError: not an address
    if given:
        return tuple(given)
    for candidate in (listen, tunnel_server):
        try:
            if not ipaddress.ip_address(candidate).is_unspecified:
                return (candidate,)
        except ValueError:
            pass
    return ()


def _loopback(listen: str) -> bool:
    try:
        return ipaddress.ip_address(listen).is_loopback
    except ValueError:
        return listen == "localhost"


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
    if bool(a.tls_cert) != bool(a.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    registration = a.registration or ("open" if _loopback(a.listen) else "closed")
    invite_tokens = frozenset()
    if registration == "invite":
        if not a.invite_tokens_file:
            parser.error("--registration invite needs --invite-tokens-file")
        try:
            text = Path(a.invite_tokens_file).read_text()
        except OSError as exc:
            parser.error("--invite-tokens-file: {}".format(exc))
        invite_tokens = frozenset(t.strip() for t in text.splitlines() if t.strip())
    limits = Limits(**{f.name: type(f.default)(getattr(a, f.name)) for f in fields(Limits)})
    bounds = Bounds(**{f.name: type(f.default)(getattr(a, f.name)) for f in fields(Bounds)})
    plane_args = ["--keepalive-interval", "{}s".format(a.keepalive_interval),
                  "--keepalive-count", str(a.keepalive_count),
                  "--open-timeout", "{}s".format(a.open_timeout), *bounds.plane_args()]
    tls_source = "internal CA"
    if a.tls_cert:
        plane_args += ["--tls-cert", a.tls_cert, "--tls-key", a.tls_key]
        tls_source = "the given certificate {}".format(a.tls_cert)
    if a.acme_directory:
        plane_args += ["--acme-directory", a.acme_directory, "--acme-email", a.acme_email,
                       "--acme-renew-before", "{}s".format(a.acme_renew_before),
                       "--acme-check-interval", "{}s".format(a.acme_check_interval)]
        if a.acme_ca:
            plane_args += ["--acme-ca", a.acme_ca]
        tls_source = ("the given certificate where it applies, else " if a.tls_cert else "") + \
            "ACME ({})".format(a.acme_directory)
    plane_args += signin.plane_args(a, env, a.data_dir, parser.error)
    api_listen = a.api_listen or (a.listen if _loopback(a.listen) else "127.0.0.1")
    if a.admin and not (_loopback(a.listen) and _loopback(api_listen)):
        # The /_admin/ routes have no authentication, and the API is also served as
        # --api-name on the public TLS port: only an edge that is loopback-only may have them.
        parser.error("--admin needs --listen and --api-listen on loopback addresses: the "
                     "/_admin/ routes have no authentication (got --listen {} --api-listen {})"
                     .format(a.listen, api_listen))
    if a.store.strip() not in ("", "sqlite") and not is_postgres(a.store.strip()):
        parser.error("--store: give a PostgreSQL URL (postgresql://...) or leave it empty for SQLite")
    cluster_secret = b""
    if is_postgres(a.store.strip()):
        if not a.cluster_secret_file:
            parser.error("--store postgresql://... needs --cluster-secret-file (the secret every "
                         "node shares for the link between nodes)")
        try:
            cluster_secret = Path(a.cluster_secret_file).read_bytes().strip()
        except OSError as exc:
            parser.error("--cluster-secret-file: {}".format(exc))
        if len(cluster_secret) < 16:
            parser.error("--cluster-secret-file: the secret must be at least 16 characters")
    if check_spec(a.socket_addresses):
        parser.error(check_spec(a.socket_addresses))
    tunnel_server = a.tunnel_server or _default_tunnel_server(a.listen, domain)
    try:
        public_ips = _public_ips(a.public_ip, a.listen, tunnel_server)
    except ValueError as exc:
        parser.error("--public-ip: {}".format(exc))
    dns_port = None
    if str(a.dns_port).strip() != "":
        try:
            dns_port = _port(str(a.dns_port).strip())
        except (ValueError, argparse.ArgumentTypeError):
            parser.error("--dns-port: a port 0..65535, or empty for no DNS")
        if not public_ips:
            parser.error("--dns-port needs --public-ip: this node listens on no one address "
                         "the DNS could give out")
        plane_args += ["--dns-ttl", "{}s".format(a.dns_ttl),
                       "--dns-answers-per-minute", str(a.dns_answers_per_minute)]
        if a.dns_ns.strip():
            plane_args += ["--dns-ns", a.dns_ns.strip()]
        if a.acme_directory:        # the zone's names: one wildcard by DNS-01, never an order each
            plane_args.append("--acme-wildcard")
            tls_source = tls_source.replace("ACME (", "ACME (one wildcard for the zone by "
                                            "DNS-01, HTTP-01 for other names; ", 1)
    return EdgeConfig(
        socket_addresses=a.socket_addresses,
        operators=frozenset(e.strip().lower() for e in a.operators.split(",") if e.strip()),
        dashboard_sample_interval=a.dashboard_sample_interval,
        oidc_issuer=a.oidc_issuer.strip(),
        dns_port=dns_port, public_ips=public_ips,
        acme_wildcard="--acme-wildcard" in plane_args, acme_renew_before=a.acme_renew_before,
        acme_check_interval=a.acme_check_interval, metrics_listen=a.metrics_listen,
        hostname_resolver=a.hostname_resolver.strip(),
        hostname_check_interval=a.hostname_check_interval,
        store=a.store.strip(), node_name=a.node_name or tunnel_server,
        link_port=a.link_port, cluster_secret_file=a.cluster_secret_file if cluster_secret else "",
        api_port=a.api_port, ssh_port=a.ssh_port, http_port=a.http_port,
        https_port=a.https_port, api_name=(a.api_name or "api." + domain).lower(),
        api_listen=api_listen,
        local_ports=a.local_ports, registration=registration, invite_tokens=invite_tokens,
        limits=limits, plane_args=plane_args, tls_source=tls_source,
        domain=domain, data_dir=a.data_dir, listen=a.listen,
        token_lifetime=a.token_lifetime, tcp_ports=a.tcp_ports, admin=a.admin,
        log_level=a.log_level,
        tunnel_server=tunnel_server,
        faults=faults)
