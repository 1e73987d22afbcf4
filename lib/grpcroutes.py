"""GRPCRoute -> entries of the same route table as HTTPRoutes: a gRPC call is an HTTP/2 POST to
`/<service>/<method>`, so a method match is a path match and a header match is a header match.

Everything else a GRPCRoute shares with an HTTPRoute and is answered by lib/httproutes.py with
kind=GRPC_ROUTE: where it attaches (listeners whose kinds include GRPCRoute), its rules' header
filters and weighted backends (whose ports speak h2c unless they say otherwise: gRPC is HTTP/2),
ReferenceGrants from GRPCRoutes, and the status conditions. Only the match differs, here:

- Exact service and method: the Exact path `/<service>/<method>`;
- Exact service or method alone, and RegularExpression: a path regular expression (the edge
  anchors it) in which a missing part is any one path segment;
- no method match: every path;
- and only a gRPC request (`content-type: application/grpc`, `+proto` and the like), so a
  GRPCRoute and an HTTPRoute can share a hostname and each gets its own requests.

The spec's precedence among a listener's gRPC entries (most characters of a matching service,
then of a matching method, then most header matches) is the Match's `rank`, which
lib/routetable.precedence puts where an HTTPRoute entry's path goes.
"""

import re

from lib import routetable

ANY_SEGMENT = "[^/]+"
GRPC_CONTENT_TYPE = routetable.ValueMatch("content-type", r"application/grpc([+;].*)?", "RegularExpression")


def match(spec):
    """A GRPCRouteMatch -> routetable.Match."""
    headers = tuple(routetable.ValueMatch(h.get("name", ""), h.get("value", ""), h.get("type") or "Exact")
                    for h in spec.get("headers") or [])
    if not any(h.name.lower() == "content-type" for h in headers):
        headers += (GRPC_CONTENT_TYPE,)         # last: a match the route makes on it is the one the edge keeps
    method = spec.get("method")
    if not method:
        return routetable.Match(routetable.PATH_PREFIX, "/", headers=headers, rank=(0, 0))
    service, name = method.get("service") or "", method.get("method") or ""
    rank = (len(service), len(name))
    if (method.get("type") or "Exact") == "Exact":
        if service and name:
            return routetable.Match(routetable.PATH_EXACT, f"/{service}/{name}", headers=headers, rank=rank)
        path = "/{}/{}".format(re.escape(service) if service else ANY_SEGMENT, re.escape(name) if name else ANY_SEGMENT)
    else:
        path = "/(?:{})/(?:{})".format(service or ANY_SEGMENT, name or ANY_SEGMENT)
    return routetable.Match(routetable.PATH_REGEX, path, headers=headers, rank=rank)
