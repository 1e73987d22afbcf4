"""Validation of API request bodies: JSON in, typed values or ``BadInput`` out.

Why it is shaped this way: every body is checked completely BEFORE anything is
written, so bad input can never half-change state; the functions are pure
(no I/O), so they are table-tested without a server. Optional fields accept
JSON null as "not given", because clients in the wild send nulls for unset
fields; a value of the wrong type is an error, never coerced.
"""

import json
from dataclasses import dataclass
from typing import Callable

SOCKET_TYPES = ("http", "https", "tcp", "tls")
UPSTREAM_PROTOCOLS = ("http/1.1", "h2c")
MAX_TEXT = 256
MAX_PASSWORD = 1024
MAX_SSHKEY = 16384
MAX_LIST = 100


class BadInput(Exception):
    """The request body is not acceptable; the message says why (for the client)."""


@dataclass
class NewUser:
    name: str
    email: str
    password: str
    sshkey: str


@dataclass
class NewSocket:
    name: str = ""
    socket_type: str = "http"
    protected_socket: bool = False
    protected_username: str = ""
    protected_password: str = ""
    cloud_authentication_enabled: bool = False
    allowed_addresses: tuple = ()
    allowed_domains: tuple = ()
    upstream_protocol: str = "http/1.1"


def json_object(raw: bytes, empty_ok: bool = False) -> dict:
    """The body as a dict; BadInput when it is not a JSON object."""
    if not raw.strip() and empty_ok:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadInput("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object")
    return body


def _text(body: dict, key: str, required: bool, limit: int = MAX_TEXT) -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise BadInput("missing field: {}".format(key))
        return ""
    if not isinstance(value, str):
        raise BadInput("{} must be a string".format(key))
    if required and not value.strip():
        raise BadInput("{} must not be empty".format(key))
    if len(value) > limit:
        raise BadInput("{} is too long (at most {} characters)".format(key, limit))
    return value


def _flag(body: dict, key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadInput("{} must be true or false".format(key))
    return value


def _text_list(body: dict, key: str) -> tuple:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput("{} must be a list of strings".format(key))
    if len(value) > MAX_LIST or any(len(v) > MAX_TEXT for v in value):
        raise BadInput("{} is too long".format(key))
    return tuple(value)


def _email(body: dict) -> str:
    email = _text(body, "email", required=True).strip().lower()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or any(c.isspace() for c in email):
        raise BadInput("email is not an email address")
    return email


def new_user(body: dict, key_ok: Callable[[str], bool]) -> NewUser:
    """Fields of POST /user; key_ok tells whether sshkey is a public key line."""
    user = NewUser(name=_text(body, "name", required=True),
                   email=_email(body),
                   password=_text(body, "password", required=True, limit=MAX_PASSWORD),
                   sshkey=_text(body, "sshkey", required=True, limit=MAX_SSHKEY).strip())
    if "\n" in user.sshkey or not key_ok(user.sshkey):
        raise BadInput("sshkey is not an OpenSSH public key line")
    return user


def login(body: dict) -> tuple:
    """(email, password) of POST /login."""
    return (_email(body),
            _text(body, "password", required=True, limit=MAX_PASSWORD))


def new_socket(body: dict) -> NewSocket:
    """Fields of POST /socket and POST /connect."""
    socket_type = _text(body, "socket_type", required=False) or "http"
    if socket_type not in SOCKET_TYPES:
        raise BadInput("socket_type must be one of " + ", ".join(SOCKET_TYPES))
    sock = NewSocket(
        name=_text(body, "name", required=False),
        socket_type=socket_type,
        protected_socket=_flag(body, "protected_socket"),
        protected_username=_text(body, "protected_username", required=False),
        protected_password=_text(body, "protected_password", required=False,
                                 limit=MAX_PASSWORD),
        cloud_authentication_enabled=_flag(body, "cloud_authentication_enabled"),
        allowed_addresses=_text_list(body, "cloud_authentication_email_allowed_addressses"),
        allowed_domains=_text_list(body, "cloud_authentication_email_allowed_domains"),
        upstream_protocol=upstream_protocol(body))
    if sock.protected_socket and sock.cloud_authentication_enabled:
        raise BadInput("a socket has basic auth (protected_socket) or cloud authentication "
                       "(visitors sign in), not both")
    if sock.protected_socket:
        if not sock.protected_username or not sock.protected_password:
            raise BadInput("a protected socket needs protected_username and "
                           "protected_password")
        if ":" in sock.protected_username:
            raise BadInput("protected_username must not contain ':'")
    else:
        sock.protected_password = ""
    return sock



def tunnel_owner(body: dict) -> str:
    """The optional `owner` of POST /socket/{id}/tunnel (an addition to the contract)."""
    return _text(body, "owner", required=False)


def own_address(body: dict) -> bool:
    """The optional `own_address` of POST /socket: an address of its own (--socket-addresses)."""
    return _flag(body, "own_address")


def tunnel_backend(body: dict) -> str:
    """The optional `backend` of POST /socket/{id}/tunnel: the backend of the socket's route
    table this tunnel serves (an addition to the contract)."""
    return _text(body, "backend", required=False)


def route_table(body: dict):
    """The `routes` of PUT /socket/{id}/routes: a table (edge.routetables checks its shape) or
    null for none."""
    if "routes" not in body:
        raise BadInput("missing field: routes (a route table, or null for none)")
    return body["routes"]


def unique_name(body: dict) -> bool:
    """The optional `unique_name` of POST /socket: one socket per name for this account."""
    return _flag(body, "unique_name")


def upstream_protocol(body: dict) -> str:
    """The optional `upstream_protocol` of a socket (an addition to the contract): what its app
    speaks through the tunnel, "http/1.1" (absent or null) or "h2c" (HTTP/2 without TLS: gRPC)."""
    value = _text(body, "upstream_protocol", required=False) or "http/1.1"
    if value not in UPSTREAM_PROTOCOLS:
        raise BadInput("upstream_protocol must be one of " + ", ".join(UPSTREAM_PROTOCOLS))
    return value


PROTECTION_FIELDS = ("protected_socket", "protected_username", "protected_password")
CLOUD_AUTH_LISTS = ("cloud_authentication_email_allowed_addressses",
                    "cloud_authentication_email_allowed_domains")


def cloud_auth_lists(body: dict, current: tuple) -> tuple:
    """(addresses, domains) of PATCH /socket/{id}: a list the body names replaces the current one
    (``current``: the socket's), so a changed list takes effect without a new socket (and name)."""
    return tuple(tuple(_text_list(body, k)) if k in body else tuple(c)
                 for k, c in zip(CLOUD_AUTH_LISTS, current))


def protection(body: dict) -> tuple:
    """(protected_socket, protected_username, protected_password) of PATCH /socket/{id}: the
    same rules as on create, so a rotated password can be set without a new socket (and name)."""
    fields = new_socket({k: body.get(k) for k in ("protected_socket", "protected_username",
                                                  "protected_password")})
    return fields.protected_socket, fields.protected_username, fields.protected_password
