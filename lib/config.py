"""Settings from flags, the environment and the mounted secret files.

Every flag has an environment-variable fallback (MYSOCKETD_<FLAG>), and the
three credentials also fall back to files in the mounted Secret, so the same
binary runs from a terminal, from a Deployment with env vars, and from the
manifest with its Secret volume. Precedence: flag, then env, then file.

The e-mail and password may change while the controller runs: Kubernetes
updates a mounted Secret by swapping a symlink, and a password is rotated
now and then. So when they come from files, `Config.credentials()` reads the
files again each time it is asked (at every login), instead of keeping what
was there at start-up.

`describe()` is the one place that decides what the log may show: the
password is never printed, the key file only by path.

There is no default edge: the hosted Mysocket service (api.mysocket.io) is
gone, and a default that points at it would send a newcomer's controller to
retry a dead address forever. `--api-url` names the user's own edge
(edge/README.md); the SSH host defaults to that URL's host. Every mistake in
flags or their env vars is a ConfigError: one line that says what to set,
never argparse's usage screen or a traceback.
"""

import argparse
import dataclasses
import os
import urllib.parse

from lib.version import version

SECRET_DIR = "/etc/mysocket"


@dataclasses.dataclass(frozen=True)
class Config:
    api_url: str
    ssh_host: str
    ssh_port: int
    email: str
    password: str = dataclasses.field(repr=False)
    private_key: str            # path of the mounted key; copied before use
    known_hosts: str            # path, or "" for trust on first use
    state_dir: str
    namespace: str              # "" = all namespaces
    cluster_name: str           # "" = the UID of kube-system (lib/identity.py)
    adopt_original_sockets: bool
    dry_run: bool
    log_format: str
    log_level: str
    health_port: int
    resync_seconds: int
    leader_election: bool
    lease_namespace: str
    lease_name: str
    probe_url: str              # "" = no traffic probe
    uninstall: bool = False     # lib/uninstall.py instead of the controller
    deployment: str = "mysocketd"   # mysocketd's own Deployment (in lease_namespace), stopped by --uninstall
    email_file: str = ""        # where the e-mail was read, re-read at each login ("" = given by flag/env)
    password_file: str = ""

    def credentials(self):
        """(email, password) as they are now: files are read again; a file that went missing keeps
        the start-up value rather than logging in with nothing."""
        email = (_read_secret_file(self.email_file) if self.email_file else "") or self.email
        password = (_read_secret_file(self.password_file) if self.password_file else "") or self.password
        return email, password

    def describe(self):
        """The effective configuration for the start-up log line, secrets masked."""
        shown = dataclasses.asdict(self)
        shown["password"] = "***" if self.password else "(not set)"
        return shown


class ConfigError(ValueError):
    pass


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
NO_EDGE = ("no edge configured: set --api-url (env MYSOCKETD_API_URL) to the API of your own edge, e.g. "
           "https://edge.example.com:8443/ (the hosted Mysocket service is gone; edge/README.md runs one)")


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line ConfigError instead of printing its usage screen and exiting."""

    def error(self, message):
        raise ConfigError(f"{message} (mysocketd --help lists every flag)")


def _flag(parser, name, default, help_, type_=str):
    env = "MYSOCKETD_" + name.upper().replace("-", "_")
    value = os.environ.get(env, default)
    if type_ is bool:
        parser.add_argument(f"--{name}", action="store_true", default=str(value).lower() in ("1", "true", "yes"),
                            help=f"{help_} [env {env}]")
        return
    try:
        value = type_(value) if value is not None else None
    except ValueError:
        raise ConfigError(f"{env}={value!r} is not a number (it sets --{name})") from None
    parser.add_argument(f"--{name}", type=type_, default=value, help=f"{help_} [env {env}; default {default!r}]")


def parser():
    p = _Parser(
        prog="mysocketd",
        description="Expose annotated Kubernetes Services through a Mysocket-compatible edge with supervised "
                    "`ssh -R` tunnels.")
    p.add_argument("--version", action="version", version=f"mysocketd {version()}")
    _flag(p, "api-url", "", "the API base URL of your edge (required; see edge/README.md)")
    _flag(p, "ssh-host", "", "SSH host of the edge (default: the host of --api-url)")
    _flag(p, "ssh-port", 2222, "SSH port of the edge (edge/'s default)", int)
    _flag(p, "secret-dir", SECRET_DIR, "where the Secret is mounted: files email, password, privatekey, "
                                       "known_hosts (optional)")
    _flag(p, "email", None, "account e-mail (else the secret dir's email file)")
    _flag(p, "password", None, "account password (else the secret dir's password file); prefer the file")
    _flag(p, "private-key", None, "private key registered with the account (else the secret dir's privatekey)")
    _flag(p, "known-hosts", None, "known_hosts for the edge (else the secret dir's known_hosts if present, "
                                  "else trust on first use)")
    _flag(p, "state-dir", "/run/mysocketd", "private writable directory: key copy, known_hosts, ssh logs")
    _flag(p, "namespace", "", "watch only this namespace (default: all)")
    _flag(p, "cluster-name", "", "this cluster's identity in every socket name; default: the UID of the "
                                 "kube-system namespace, which no other cluster shares. An override must be "
                                 "unique among the clusters on the account")
    _flag(p, "adopt-original-sockets", False, "migrating from the original controller: adopt its "
                                              "'k8s <namespace>.<name>' sockets, and delete those whose Service "
                                              "no longer exists. Only for the one cluster that migrates", bool)
    _flag(p, "dry-run", False, "log what would be done, change nothing", bool)
    _flag(p, "log-format", "json", "json or text")
    _flag(p, "log-level", "INFO", "DEBUG, INFO, WARNING or ERROR")
    _flag(p, "health-port", 8080, "port for /healthz, /readyz and /metrics (0 = off)", int)
    _flag(p, "resync-seconds", 300, "how often to re-check every Service against the API and clean up", int)
    _flag(p, "leader-election", False, "hold a Lease so that only one replica exposes Services", bool)
    _flag(p, "lease-namespace", "mysocket", "mysocketd's own namespace: the leader-election Lease and the "
                                            "ConfigMap of inherited sockets")
    _flag(p, "lease-name", "mysocketd", "name of the leader-election Lease")
    _flag(p, "probe-url", "", "check every 10 s that each http tunnel carries traffic by fetching this URL "
                              "through the edge, e.g. https://{dnsname}/ (empty: off)")
    _flag(p, "uninstall", False, "instead of running: stop mysocketd's Deployment, stop exposing every Service, "
                                 "delete every socket this cluster owns, release every finalizer and annotation "
                                 "mysocketd wrote, then exit (README: Uninstall)", bool)
    _flag(p, "deployment", "mysocketd", "mysocketd's own Deployment in --lease-namespace, scaled to 0 by "
                                        "--uninstall before it cleans up")
    return p


def edge_api_url(value):
    """The API URL with a trailing slash; ConfigError unless it is an http(s) URL with a host."""
    if not value:
        raise ConfigError(NO_EDGE)
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"--api-url {value!r} is not an http(s) URL with a host: set it (env MYSOCKETD_API_URL) "
                          "to the API of your edge, e.g. https://edge.example.com:8443/")
    return value.rstrip("/") + "/"


def _check_port(name, port, lowest):
    if not lowest <= port <= 65535:
        raise ConfigError(f"--{name} must be a port number from {lowest} to 65535, not {port}")


def load(argv=None):
    """Parse flags; fill credentials from files; fail with one clear message."""
    args = parser().parse_args(argv)
    api_url = edge_api_url(args.api_url.strip())
    _check_port("ssh-port", args.ssh_port, 1)
    _check_port("health-port", args.health_port, 0)
    if args.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {args.log_level!r}")
    secret_dir = args.secret_dir
    email = args.email or _read_secret(secret_dir, "email")
    password = args.password or _read_secret(secret_dir, "password")
    known_hosts = args.known_hosts
    if known_hosts is None:
        candidate = os.path.join(secret_dir, "known_hosts")
        known_hosts = candidate if os.path.exists(candidate) and os.path.getsize(candidate) > 0 else ""
    if not email:
        raise ConfigError(f"no account e-mail: pass --email, set MYSOCKETD_EMAIL or mount {secret_dir}/email")
    if not password:
        raise ConfigError(f"no account password: set MYSOCKETD_PASSWORD or mount {secret_dir}/password")
    if "/" in args.cluster_name:
        raise ConfigError(f"--cluster-name must not contain '/' (it is part of a socket name): {args.cluster_name!r}")
    if args.log_format not in ("json", "text"):
        raise ConfigError(f"--log-format must be json or text, not {args.log_format!r}")
    return Config(
        api_url=api_url,
        ssh_host=args.ssh_host.strip() or urllib.parse.urlsplit(api_url).hostname,
        ssh_port=args.ssh_port,
        email=email,
        password=password,
        private_key=args.private_key or os.path.join(secret_dir, "privatekey"),
        known_hosts=known_hosts,
        state_dir=args.state_dir,
        namespace=args.namespace,
        cluster_name=args.cluster_name,
        adopt_original_sockets=args.adopt_original_sockets,
        dry_run=args.dry_run,
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        health_port=args.health_port,
        resync_seconds=args.resync_seconds,
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        probe_url=args.probe_url,
        uninstall=args.uninstall,
        deployment=args.deployment,
        email_file="" if args.email else os.path.join(secret_dir, "email"),
        password_file="" if args.password else os.path.join(secret_dir, "password"),
    )


def _read_secret_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def _read_secret(secret_dir, name):
    path = os.path.join(secret_dir, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
