"""The edge's records, the store's errors, and how a record travels in the change log.

Why it is shaped this way: every node keeps the same records in memory
(edge.cache) and learns of every change from the store's change log
(edge.feed); a change carries the whole record as JSON (``to_json`` /
``from_json``), so applying it needs no second query and a node that was away
replays the log as it was written.
"""

from dataclasses import asdict, dataclass, field
from typing import Optional

FIRST_LOCAL_PORT = 10000
LAST_LOCAL_PORT = 65535


class DuplicateEmail(Exception):
    """An account with this email exists already."""


class InviteUsed(Exception):
    """This invite token made an account already (tokens are single-use)."""


class NoFreeLocalPort(Exception):
    """Every local_port number is in use or in quarantine."""


class HostnameTaken(Exception):
    """Another account proved this custom name first: it is theirs while they keep the proof."""


class StoreUnavailable(Exception):
    """The store cannot be reached (PostgreSQL down or unreachable): writes wait for it."""


class LogTruncated(Exception):
    """The change log no longer holds the changes after a node's sequence: load everything."""


@dataclass
class User:
    user_id: str
    user_name: str
    name: str
    email: str
    password_hash: str
    sshkey: str


@dataclass
class Tunnel:
    tunnel_id: str
    socket_id: str
    local_port: int
    owner: str = ""             # optional, the client's word for whose tunnel it is (edge/README.md)
    node: str = ""              # the edge node it is placed on (edge.placement); "" = this edge's only node
    backend: str = ""           # the backend of its socket's route table it serves ("" = none)


@dataclass
class Socket:
    socket_id: str
    user_id: str
    name: str
    dnsname: str
    socket_type: str
    tcp_port: Optional[int] = None
    protected_socket: bool = False
    protected_username: str = ""
    protected_password_hash: str = ""
    cloud_authentication_enabled: bool = False
    allowed_addresses: list = field(default_factory=list)
    allowed_domains: list = field(default_factory=list)
    created: float = 0.0
    routes: Optional[dict] = None   # the route table (edge/README.md, "Route tables"); None = none
    address: str = ""               # an address of its own (--socket-addresses); "" = none
    upstream_protocol: str = "http/1.1"     # what the app speaks: "http/1.1" or "h2c" (edge/README.md)
    hostnames: list = field(default_factory=list)   # custom names: dicts of edge.hostnames.Claim


@dataclass
class Node:
    """An edge node as membership sees it (a row of ``nodes``)."""
    name: str                   # unique and stable: tunnels are placed on it by this name
    tunnel_server: str          # the SSH host clients of its tunnels connect to
    link: str = ""              # host:port of its link to the other nodes ("" = none)
    api: str = ""               # host:port of its REST API
    addresses: str = ""         # its public IP addresses, comma-separated: the edge's DNS answers
    challenge: str = ""         # DNS-01 TXT values it publishes while it orders, comma-separated
    age: float = 0.0            # seconds since its last heartbeat, by the store's clock


@dataclass
class Change:
    """One row of the change log: ``data`` is None when the record was deleted."""
    seq: int
    kind: str                   # "user", "socket" or "tunnel"
    key: str
    data: Optional[dict]


KINDS = {"user": User, "socket": Socket, "tunnel": Tunnel}


def to_json(record) -> dict:
    return asdict(record)


def from_json(kind: str, data: dict):
    cls = KINDS[kind]
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
