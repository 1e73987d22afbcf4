"""A socket's route table as the API takes it: its shape, its size, its digest.

The table (edge/README.md, "Route tables") is what mysocketd makes of a
Gateway or an Ingress. The data plane is the judge of whether it can serve
it (it compiles the table: regular expressions, certificates, ports) and the
API asks it before storing anything, so a table is either applied whole or
refused with the reason. Here is only what Python must know on its own:

- the shape and the bounds, checked before anything is sent anywhere, so a
  client cannot make the edge hold or push an unbounded table;
- the digest: the sha256 of the canonical JSON, carried in the socket's JSON
  as `routes_digest`, so a client compares its own table's digest and sends
  nothing when they agree (a second reconcile makes no write);
- the backend names the table uses (for the API's answer and the tunnels).
"""

import hashlib
import json

MAX_BYTES = 4 << 20                 # certificates included
MAX_LISTENERS = 64
MAX_ROUTES = 8192                   # over all listeners
MAX_ACTIONS = 4096
MAX_BACKENDS_PER_ACTION = 16
UPSTREAM_PROTOCOLS = ("h2c", "http/1.1")    # what a backend's app speaks (`upstream_protocols`; absent: http/1.1)


class InvalidTable(ValueError):
    """The table cannot be taken; the message says what is wrong, for the client."""


def canonical(table):
    return json.dumps(table, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(table):
    """"" for no table, else the sha256 of its canonical JSON (what a client computes the same way)."""
    if table is None:
        return ""
    return hashlib.sha256(canonical(table).encode()).hexdigest()


def check(table):
    """Raise InvalidTable unless `table` has the table's shape and fits the bounds."""
    if not isinstance(table, dict):
        raise InvalidTable("the route table must be a JSON object with listeners and actions")
    if len(canonical(table)) > MAX_BYTES:
        raise InvalidTable(f"the route table is larger than {MAX_BYTES >> 20} MiB")
    listeners, actions = table.get("listeners"), table.get("actions")
    if not isinstance(listeners, list) or not isinstance(actions, list):
        raise InvalidTable("listeners and actions must be lists")
    if len(listeners) > MAX_LISTENERS:
        raise InvalidTable(f"at most {MAX_LISTENERS} listeners")
    if len(actions) > MAX_ACTIONS:
        raise InvalidTable(f"at most {MAX_ACTIONS} actions")
    routes = 0
    for i, listener in enumerate(listeners):
        if not isinstance(listener, dict) or not isinstance(listener.get("routes", []), list):
            raise InvalidTable(f"listener {i}: an object with a list of routes")
        routes += len(listener.get("routes", []))
    if routes > MAX_ROUTES:
        raise InvalidTable(f"at most {MAX_ROUTES} routes over all listeners")
    protocols = table.get("upstream_protocols", {})
    if not isinstance(protocols, dict) or not all(
            isinstance(k, str) and v in UPSTREAM_PROTOCOLS for k, v in protocols.items()):
        raise InvalidTable('upstream_protocols must map backend names to "h2c" or "http/1.1"')
    for i, action in enumerate(actions):
        if not isinstance(action, dict) or not isinstance(action.get("backends", []), list):
            raise InvalidTable(f"action {i}: an object with a list of backends")
        if len(action.get("backends", [])) > MAX_BACKENDS_PER_ACTION:
            raise InvalidTable(f"action {i}: at most {MAX_BACKENDS_PER_ACTION} backends")


def backends(table):
    """The backend names the table sends traffic to (a tunnel's `backend`)."""
    names = set()
    for action in (table or {}).get("actions") or []:
        for backend in action.get("backends") or []:
            if backend.get("backend"):
                names.add(backend["backend"])
    return names
