"""TCPRoute -> the one backend a Gateway's TCP listener sends its connections to.

The edge carries TCP as `tcp` sockets: one public port each, allocated by the
edge from its range, every connection spliced to one of the socket's tunnels,
spread evenly. So each TCP listener of a Gateway is a socket of its own
(lib/routesockets.py), and what the spec asks beyond that is answered here:

- **One backend per rule.** The tcp socket cannot weight several backends, so
  a rule whose backendRefs give traffic (weight > 0) to more than one is
  dropped, and with it the route (its only rule: the spec allows one), with
  `Accepted` False, reason `UnsupportedValue`, saying why. Refs of weight 0
  are allowed beside the one: they get no connection, as the spec says.
- **No backend, an invalid one, or weight 0**: the listener's socket has no
  tunnel, so the edge refuses every connection, as the spec requires of a
  backend that is invalid or has no endpoint (lib/httproutes resolves refs and
  ReferenceGrants for TCPRoutes as for the other kinds).
- **Several TCPRoutes on one listener**: every one is Accepted and counted in
  `attachedRoutes`; only the oldest (creationTimestamp, then namespace/name) is
  served: the spec's rule for conflicts, which the conformance test
  TCPRouteMultipleRoutesAttachment checks.

A route edited to another backend: the new backend's tunnels join the socket
first, and the old ones serve on for the controller's drain (DRAIN s, so the
connections they carry finish) before they go; meanwhile new connections are
spread over both, as there is no table on a tcp socket to stop using them.
"""

import dataclasses

from lib import httproutes
from lib.gateways import TCP_ROUTE

ONE_BACKEND = ("the edge's tcp sockets spread connections evenly over tunnels and cannot weight backends: "
               "give this rule one backendRef (others may stay at weight 0)")


@dataclasses.dataclass(frozen=True)
class TcpListener:
    """One TCP listener of a Gateway as the edge gets it: a tcp socket forwarding to `target`."""

    name: str
    port: int                           # the port the listener asked for (the edge gives another)
    route: tuple = None                 # (namespace, name) of the TCPRoute served, or None
    target: httproutes.Target = None    # where its connections go; None: every connection is refused


def rules(route, services, grants, pooled=False):
    """httproutes.rules for a TCPRoute, with any rule that weights several backends dropped."""
    found = httproutes.rules(route, services, grants, pooled=pooled, kind=TCP_ROUTE)
    actions, dropped = list(found.actions), list(found.dropped)
    for index, action in enumerate(actions):
        if action is not None and len([b for b in action.backends if b.weight > 0]) > 1:
            actions[index] = None
            dropped.append(f"rule {index}: {ONE_BACKEND}")
    return dataclasses.replace(found, actions=tuple(actions), dropped=tuple(dropped))


def listener(lis, attached):
    """The TcpListener for gateways.Listener `lis` given the (route, Rules) attached to it."""
    if not attached:
        return TcpListener(lis.name, lis.port)
    route, found = min(attached, key=lambda pair: (
        (pair[0].get("metadata") or {}).get("creationTimestamp") or "", httproutes.key_of(pair[0])))
    return TcpListener(lis.name, lis.port, httproutes.key_of(route), _target(found))


def _target(found):
    """The one Target with weight > 0 of the route's rule, or None (no connection may get through)."""
    for action in found.actions:
        live = [b for b in action.backends if b.weight > 0] if action else []
        if len(live) == 1 and live[0].key:
            return next((t for t in found.targets if t.key == live[0].key), None)
    return None
