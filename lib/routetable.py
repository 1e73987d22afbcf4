"""The route table of one public socket: what mysocketd sends, what the edge matches.

A Gateway (or every Ingress of the class, see lib/ingresses.py) becomes one
socket on the edge, and its table says, per listener, which requests go where.
The edge's matching stays simple and fast because the work is done here,
once per change rather than once per request:

- hostnames are already intersected (a route's with its listener's), so an
  entry's `hostname` is all the edge compares the request's Host with;
- entries are already in the spec's precedence order (`precedence`), so the
  edge takes the first entry that matches, and answers 404 when none does;
- each backend is a name (`backend_key`: namespace/service:port) that the
  socket's tunnels carry (`backend` on a tunnel), with a weight; a backend
  that is not valid is the empty name, and its share of the requests gets 500;
- a backend whose app speaks HTTP/2 without TLS (a gRPC server) is named in
  `upstream_protocols` as "h2c", so the edge reaches it over h2c. A Service port
  named with h2c by any route is h2c for all of them (one group of tunnels).

The JSON form (`as_json`) is the contract with the edge, documented in
edge/README.md ("Route tables"); the edge refuses a table it cannot apply,
saying why, and keeps serving the last one it took.
"""

import dataclasses

from lib import hostnames

PATH_EXACT, PATH_PREFIX, PATH_REGEX = "Exact", "PathPrefix", "RegularExpression"


def backend_key(namespace, service, port):
    return f"{namespace}/{service}:{port}"


@dataclasses.dataclass(frozen=True)
class ValueMatch:
    """A header or query parameter match."""

    name: str
    value: str
    type: str = "Exact"                 # Exact | RegularExpression


@dataclasses.dataclass(frozen=True)
class Match:
    path_type: str = PATH_PREFIX
    path: str = "/"
    method: str = ""
    headers: tuple = ()
    query: tuple = ()
    rank: tuple = ()                    # a GRPCRoute method match: (service chars, method chars), ranked instead
                                        # of the path it is translated to (lib/grpcroutes.py)


@dataclasses.dataclass(frozen=True)
class Backend:
    key: str                            # backend_key(...), or "" when the reference is not valid: 500
    weight: int = 1
    filters: tuple = ()                 # header modifiers for this backend only (dicts, as in Action)
    protocol: str = "http/1.1"          # what its app speaks: "h2c" (the table's upstream_protocols) or "http/1.1"


@dataclasses.dataclass(frozen=True)
class Action:
    """What a matching request gets: filters in order, then one backend by weight.

    `filters` are the edge's dicts: RequestHeaderModifier / ResponseHeaderModifier
    ({"type", "set": [{"name", "value"}], "add": [...], "remove": [names]}),
    RequestRedirect ({"type", "scheme", "hostname", "port", "path", "statusCode"}) and
    URLRewrite ({"type", "hostname", "path"}), `path` being {"type": ReplaceFullPath |
    ReplacePrefixMatch, "value"} or None. No backend and no redirect: 500."""

    filters: tuple = ()
    backends: tuple = ()


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where an entry comes from, for the spec's tie-breaks: oldest route, then its name, then rule order."""

    created: str
    route: str                          # "namespace/name"
    rule: int
    match: int


@dataclasses.dataclass(frozen=True)
class Entry:
    hostname: str                       # hostnames.ANY, a name, or *.suffix
    match: Match
    action: Action
    origin: Origin


@dataclasses.dataclass(frozen=True)
class Listener:
    name: str
    port: int
    protocol: str                       # HTTP | HTTPS | TLS
    hostname: str
    certificates: tuple = ()            # lib.gateways.Certificate
    entries: tuple = ()


def precedence(entry):
    """Sort key of the spec's order: the most specific hostname, then Exact path, longest prefix
    (a RegularExpression path sits after Exact and before prefixes: the spec leaves it to us), a
    method, most header matches, most query matches; ties to the oldest route, its namespace/name,
    then rule and match order."""
    m = entry.match
    if m.rank:                          # GRPCRoute: most service characters, then most method characters
        path_key = (0, -m.rank[0], -m.rank[1])
    else:
        path_key = ({PATH_EXACT: 0, PATH_REGEX: 1}.get(m.path_type, 2), -len(m.path), 0)
    kind, length = hostnames.specificity(entry.hostname)
    return (-kind, -length, *path_key, 0 if m.method else 1, -len(m.headers), -len(m.query),
            entry.origin.created, entry.origin.route, entry.origin.rule, entry.origin.match)


def ordered(entries):
    return tuple(sorted(entries, key=precedence))


def backends_of(listeners):
    """Every valid backend key the table sends traffic to (the tunnels the socket needs)."""
    keys = set()
    for listener in listeners:
        for entry in listener.entries:
            keys.update(b.key for b in entry.action.backends if b.key)
    return keys


def as_json(listeners):
    """The table as the edge takes it (PUT /socket/{id}/routes): actions are shared between the entries
    of one rule (one per match and hostname), so a rule with many hostnames is sent once. Filters are
    dicts, so actions are told apart by identity: translation makes one Action per rule."""
    actions, index, protocols = [], {}, {}
    out = []
    for listener in listeners:
        routes = []
        for entry in listener.entries:
            if id(entry.action) not in index:         # the same object for every entry of one rule
                index[id(entry.action)] = len(actions)
                actions.append(_action_json(entry.action))
                protocols.update((b.key, "h2c") for b in entry.action.backends if b.key and b.protocol == "h2c")
            routes.append({"hostname": entry.hostname, "match": _match_json(entry.match),
                           "action": index[id(entry.action)]})
        out.append({"name": listener.name, "port": listener.port, "protocol": listener.protocol,
                    "hostname": listener.hostname,
                    "certificates": [{"cert": c.cert_pem, "key": c.key_pem} for c in listener.certificates],
                    "routes": routes})
    table = {"listeners": out, "actions": actions}
    if protocols:                       # only then: a table without h2c backends is what older edges took
        table["upstream_protocols"] = dict(sorted(protocols.items()))
    return table


def _match_json(m):
    return {"path": {"type": m.path_type, "value": m.path}, "method": m.method,
            "headers": [dataclasses.asdict(h) for h in m.headers],
            "query": [dataclasses.asdict(q) for q in m.query]}


def _action_json(action):
    return {"filters": list(action.filters),
            "backends": [{"backend": b.key, "weight": b.weight, "filters": list(b.filters)} for b in action.backends]}
