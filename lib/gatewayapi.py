"""The Gateway API objects of a cluster -> each Gateway's route table and every status mysocketd writes.

`translate` is the one pure step between what the watches saw (`World`) and
what the controller does: for every Gateway of a class of ours, the route
table its socket on the edge gets and the Service ports it needs tunnels for;
for every HTTPRoute, its verdict on each of our Gateways. `gateway_status`,
`class_status` and `route_status` turn verdicts plus the edge's answer into
the status objects, with the spec's conditions and reasons, each condition at
the generation it describes. Nothing here talks to the API or the edge, so
the whole of it is table-tested (tests/unit/test_gatewayapi.py). TCPRoutes
attach the same way; a TCP listener is not in the table but a socket of its
own (lib/tcproutes.py).
"""

import dataclasses

from lib import conditions, gateways, grpcroutes, httproutes, routetable, services, tcproutes
from lib.conditions import Condition
from lib.gateways import CONTROLLER_NAME, GROUP

# What the GatewayClass says mysocketd supports (status.supportedFeatures; the conformance run claims these).
SUPPORTED_FEATURES = (
    "Gateway", "HTTPRoute", "ReferenceGrant", "TLSRoute", "GRPCRoute", "GRPCRouteNamedRouteRule",
    "HTTPRouteHostRewrite", "HTTPRouteMethodMatching", "HTTPRoutePathRedirect", "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect", "HTTPRouteQueryParamMatching", "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect", "HTTPRoute303RedirectStatusCode", "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode", "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteNamedRouteRule", "GatewayHTTPListenerIsolation", "HTTPRouteBackendProtocolH2C",
)


@dataclasses.dataclass(frozen=True)
class World:
    """Everything translation reads, as the API serves it."""

    classes: list = dataclasses.field(default_factory=list)
    gateways: list = dataclasses.field(default_factory=list)
    http_routes: list = dataclasses.field(default_factory=list)
    tls_routes: list = dataclasses.field(default_factory=list)
    tcp_routes: list = dataclasses.field(default_factory=list)
    grpc_routes: list = dataclasses.field(default_factory=list)
    grants: list = dataclasses.field(default_factory=list)
    services: dict = dataclasses.field(default_factory=dict)          # (ns, name) -> Service
    secrets: dict = dataclasses.field(default_factory=dict)           # (ns, name) -> Secret | gateways.UNREADABLE
    namespace_labels: dict = dataclasses.field(default_factory=dict)  # ns -> labels


@dataclasses.dataclass(frozen=True)
class GatewayPlan:
    verdict: gateways.Gateway
    listeners: tuple                    # routetable.Listener, only those the edge serves
    attached: dict                      # listener name -> number of routes attached
    targets: frozenset                  # httproutes.Target the table sends traffic to
    tcp: tuple = ()                     # tcproutes.TcpListener: each its own tcp socket

    @property
    def key(self):
        return self.verdict.namespace, self.verdict.name

    @property
    def table(self):
        return routetable.as_json(self.listeners)


@dataclasses.dataclass(frozen=True)
class RouteVerdict:
    route: dict
    parents: tuple                      # httproutes.Parent
    rules: httproutes.Rules


@dataclasses.dataclass(frozen=True)
class Picture:
    classes: dict                       # class name -> Condition (ours only)
    gateways: dict                      # (ns, name) -> GatewayPlan (ours only)
    routes: dict                        # (ns, name) -> RouteVerdict (HTTPRoutes with a parent of ours)
    tls_routes: dict = dataclasses.field(default_factory=dict)     # ... TLSRoutes
    tcp_routes: dict = dataclasses.field(default_factory=dict)     # ... TCPRoutes
    grpc_routes: dict = dataclasses.field(default_factory=dict)    # ... GRPCRoutes


@dataclasses.dataclass(frozen=True)
class EdgeAnswer:
    """What the edge said about one Gateway's socket and table."""

    programmed: bool = False
    message: str = "waiting for the edge"
    addresses: tuple = ()               # ({"type": "IPAddress" | "Hostname", "value": ...}, ...)
    tcp: dict = dataclasses.field(default_factory=dict)     # TCP listener name -> EdgeAnswer of its socket


def translate(world: World) -> Picture:
    classes = {c["metadata"]["name"]: gateways.class_accepted(c) for c in world.classes if gateways.class_is_ours(c)}
    ours = {name for name, cond in classes.items() if cond.status}
    verdicts, pooled = {}, set()
    for gw in world.gateways:
        if (gw.get("spec") or {}).get("gatewayClassName") in ours:
            verdict = gateways.validate(gw, world.secrets, world.grants)
            verdicts[(verdict.namespace, verdict.name)] = verdict
            if ((gw["metadata"].get("annotations") or {}).get(services.POOL) or "").strip():
                pooled.add((verdict.namespace, verdict.name))
    routes, tls_routes, tcp_routes, grpc_routes, per_listener, attached = {}, {}, {}, {}, {}, {}
    for kind, found, objects in ((gateways.HTTP_ROUTE, routes, world.http_routes),
                                 (gateways.TLS_ROUTE, tls_routes, world.tls_routes),
                                 (gateways.TCP_ROUTE, tcp_routes, world.tcp_routes),
                                 (gateways.GRPC_ROUTE, grpc_routes, world.grpc_routes)):
        for route in objects:
            _attach(route, kind, found, world, verdicts, pooled, attached, per_listener)
    plans = {}
    for key, verdict in verdicts.items():
        tables, targets, tcp = [], set(), []
        for listener in verdict.listeners:
            if not (verdict.accepted.status and listener.serving):
                continue
            if listener.protocol == "TCP":
                tcp.append(tcproutes.listener(listener, per_listener.get((key, listener.name), [])))
                continue
            entries = []
            for route, rules in per_listener.get((key, listener.name), []):
                entries.extend(httproutes.entries(route, rules, listener, grpcroutes.match
                                                  if rules.kind == gateways.GRPC_ROUTE else None))
                targets |= rules.targets
            tables.append(routetable.Listener(listener.name, listener.port, listener.protocol, listener.hostname,
                                              listener.certificates, routetable.ordered(entries)))
        plans[key] = GatewayPlan(verdict, tuple(tables),
                                 {lis.name: attached.get((key, lis.name), 0) for lis in verdict.listeners},
                                 frozenset(targets), tuple(tcp))
    return Picture(classes, plans, routes, tls_routes, tcp_routes, grpc_routes)


def _attach(route, kind, found, world, verdicts, pooled, attached, per_listener):
    """One route's verdict on our Gateways, counted on the listeners it attached to."""
    parents = httproutes.parents(route, verdicts, world.namespace_labels, kind)
    if not parents:
        return
    in_pool = any(p.gateway in pooled for p in parents)
    if kind == gateways.TCP_ROUTE:
        rules = tcproutes.rules(route, world.services, world.grants, pooled=in_pool)
    else:
        rules = httproutes.rules(route, world.services, world.grants, pooled=in_pool, kind=kind)
    found[httproutes.key_of(route)] = RouteVerdict(route, tuple(parents), rules)
    if rules.accepted_problem:
        return
    seen = set()
    for parent in parents:
        for name in parent.listeners:
            if (parent.gateway, name) in seen:
                continue
            seen.add((parent.gateway, name))
            attached[(parent.gateway, name)] = attached.get((parent.gateway, name), 0) + 1
            per_listener.setdefault((parent.gateway, name), []).append((route, rules))


def class_status(gateway_class, condition, now=None):
    previous = (gateway_class.get("status") or {}).get("conditions") or ()
    generation = gateway_class["metadata"].get("generation", 0)
    return {"conditions": conditions.render([condition], generation, previous, now),
            "supportedFeatures": [{"name": f} for f in sorted(SUPPORTED_FEATURES)]}


def gateway_status(gateway, plan: GatewayPlan, edge: EdgeAnswer, now=None):
    """The Gateway's whole status: addresses, Accepted/Programmed, one entry per listener."""
    verdict = plan.verdict
    previous = gateway.get("status") or {}
    if not verdict.accepted.status:
        programmed = Condition("Programmed", False, "Invalid", "the Gateway is not accepted")
    elif edge.programmed and edge.addresses:
        programmed = Condition("Programmed", True, "Programmed", edge.message)
    elif edge.programmed:
        programmed = Condition("Programmed", False, "AddressNotAssigned", "the edge gave the socket no address")
    else:
        programmed = Condition("Programmed", False, "Pending", edge.message)
    old_listeners = {lis.get("name"): lis.get("conditions") for lis in previous.get("listeners") or []}
    listeners = []
    for listener in verdict.listeners:
        if listener.serving and listener.protocol == "TCP" and verdict.accepted.status:
            socket = edge.tcp.get(listener.name) or EdgeAnswer()
            l_programmed = Condition("Programmed", socket.programmed, "Programmed" if socket.programmed else "Pending",
                                     socket.message)
        elif listener.serving and programmed.status:
            l_programmed = Condition("Programmed", True, "Programmed")
        elif listener.serving:
            l_programmed = Condition("Programmed", False, "Pending", programmed.message)
        else:
            l_programmed = Condition("Programmed", False, "Invalid",
                                     (listener.accepted.message or listener.conflicted.message
                                      or listener.resolved_refs.message))
        conds = [listener.accepted, listener.conflicted, listener.resolved_refs, l_programmed]
        listeners.append({
            "name": listener.name,
            "supportedKinds": [{"group": g, "kind": k} for g, k in listener.kinds],
            "attachedRoutes": plan.attached.get(listener.name, 0),
            "conditions": conditions.render(conds, verdict.generation, old_listeners.get(listener.name) or ()),
        })
    return {"addresses": list(edge.addresses) if verdict.accepted.status else [],
            "conditions": conditions.render([verdict.accepted, programmed], verdict.generation,
                                            previous.get("conditions") or (), now),
            "listeners": listeners}


def route_status(verdict: RouteVerdict, now=None):
    """status.parents: ours rewritten, other controllers' entries kept as they are."""
    route = verdict.route
    generation = route["metadata"].get("generation", 0)
    old = (route.get("status") or {}).get("parents") or []
    foreign = [p for p in old if p.get("controllerName") != CONTROLLER_NAME]
    mine = {_ref_key(p.get("parentRef") or {}, route): p for p in old if p.get("controllerName") == CONTROLLER_NAME}
    ours = []
    for parent in verdict.parents:
        before = mine.get(_ref_key(parent.ref, route)) or {}
        ours.append(httproutes.parent_status(parent, verdict.rules, generation, before.get("conditions") or (), now))
    return {"parents": (ours + foreign)[:32]}


def _ref_key(ref, route):
    namespace = httproutes.key_of(route)[0]
    return (GROUP if ref.get("group") is None else ref.get("group"), ref.get("kind") or "Gateway",
            ref.get("namespace") or namespace, ref.get("name"), ref.get("sectionName"), ref.get("port"))
