"""HTTPRoute -> where it attaches, what its rules send where, its entries in a route table.

Pure functions over the objects as the API serves them; the controller lists
them and asks here. Three questions, each answered once:

- `parents`: for each parentRef to one of our Gateways, whether the route is
  Accepted there and on which listeners. The reasons follow the spec's order:
  no listener by that sectionName/port (`NoMatchingParent`), none that lets
  this kind from this namespace attach (`NotAllowedByListeners`), none whose
  hostname intersects the route's (`NoMatchingListenerHostname`).
- `rules`: each rule's Action (filters, weighted backends) and the route's
  ResolvedRefs. A backend that is not valid (another kind, another namespace
  without a ReferenceGrant, no such Service or port, an unsupported
  appProtocol) stays in the rule with its weight and an empty key, so its
  share of the requests gets the spec's 500. A rule that needs what the edge
  does not do (a mirror, CORS) is dropped and the route says so
  (`PartiallyInvalid`, "Dropped Rule ..."; `Accepted` False when no rule is left).
- `entries`: the rule's matches on one listener, once per intersected hostname.
"""

import dataclasses

from lib import conditions, hostnames, refgrants, routetable, services
from lib.conditions import Condition
from lib.gateways import CONTROLLER_NAME, GRPC_ROUTE, GROUP, HTTP_ROUTE, allows_namespace

SUPPORTED_APP_PROTOCOLS = (None, "", "http", "kubernetes.io/ws", services.H2C_APP_PROTOCOL)
GRPC_APP_PROTOCOLS = (None, "", services.H2C_APP_PROTOCOL)
HEADER_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")


@dataclasses.dataclass(frozen=True)
class Parent:
    ref: dict                           # the parentRef as the route's spec has it (echoed in status)
    gateway: tuple                      # (namespace, name)
    accepted: Condition
    listeners: tuple = ()               # names of the listeners it attached to


@dataclasses.dataclass(frozen=True)
class Target:
    """A Service port some rule sends traffic to: one tunnel group on the edge."""

    namespace: str
    service: str
    port: int

    @property
    def key(self):
        return routetable.backend_key(self.namespace, self.service, self.port)


@dataclasses.dataclass(frozen=True)
class Rules:
    actions: tuple                      # per rule: routetable.Action, or None when dropped
    resolved_refs: Condition
    dropped: tuple = ()                 # "rule 2: ..." for each dropped rule
    targets: frozenset = frozenset()    # Target of every valid backend
    kind: tuple = HTTP_ROUTE            # the route's kind: its matches are translated by it

    @property
    def accepted_problem(self):
        """An Accepted=False condition when no rule is left, else None."""
        if self.actions and all(a is None for a in self.actions):
            return Condition("Accepted", False, "UnsupportedValue", "no rule can be served: " + "; ".join(self.dropped))
        return None


def key_of(obj):
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def route_hostnames(route):
    return [hostnames.normalize(h) for h in (route.get("spec") or {}).get("hostnames") or []] or [hostnames.ANY]


def effective_hostnames(route_names, listener):
    """The route's hostnames as narrowed by `listener`'s, without repeats ([] when none intersect)."""
    out = []
    for name in route_names:
        both = hostnames.intersect(name, listener.hostname)
        if both is not None and both not in out:
            out.append(both)
    return out


def parents(route, gateways, namespace_labels, kind=HTTP_ROUTE):
    """A Parent for every parentRef naming a Gateway in `gateways` ({(ns, name): lib.gateways.Gateway}, ours only)."""
    namespace = key_of(route)[0]
    names = route_hostnames(route)
    out = []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        group = GROUP if ref.get("group") is None else ref.get("group")
        if (group, ref.get("kind") or "Gateway") != (GROUP, "Gateway"):
            continue
        gw_key = (ref.get("namespace") or namespace, ref.get("name", ""))
        gateway = gateways.get(gw_key)
        if gateway is None:
            continue
        out.append(Parent(ref, gw_key, *_attach(ref, gateway, namespace, names, namespace_labels, kind)))
    return out


def _attach(ref, gateway, route_namespace, names, namespace_labels, kind):
    section, port = ref.get("sectionName"), ref.get("port")
    candidates = [lis for lis in gateway.listeners
                  if (section is None or lis.name == section) and (port is None or lis.port == port)]
    if not candidates:
        what = " and ".join(filter(None, [section and f"sectionName {section}", port and f"port {port}"]))
        return Condition("Accepted", False, "NoMatchingParent",
                         f"Gateway {gateway.name} has no listener with {what}"), ()
    allowed = [lis for lis in candidates if lis.usable and kind in lis.kinds
               and allows_namespace(lis, route_namespace, gateway.namespace, namespace_labels)]
    if not allowed:
        return Condition("Accepted", False, "NotAllowedByListeners",
                         f"no listener of Gateway {gateway.name} allows {kind[1]}s from namespace "
                         f"{route_namespace}"), ()
    attached = tuple(lis.name for lis in allowed if effective_hostnames(names, lis))
    if not attached:
        return Condition("Accepted", False, "NoMatchingListenerHostname",
                         f"no listener of Gateway {gateway.name} serves the hostnames {', '.join(names)}"), ()
    return Condition("Accepted", True, "Accepted"), attached


def rules(route, services, grants, pooled=False, kind=HTTP_ROUTE):
    """Rules of `route` as actions, with ResolvedRefs. `services`: {(ns, name): Service dict}.

    `pooled`: the route serves a Gateway shared by the clusters of a pool. A Service that does not exist
    here keeps its backend in the table then (another cluster of the pool may have it; the edge answers
    500 only when no cluster has a tunnel for it), and the route says so without calling it unresolved."""
    namespace = key_of(route)[0]
    actions, dropped, problems, targets, elsewhere = [], [], [], set(), []
    for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        filters, why = _filters(rule.get("filters") or [], allow_redirect=kind == HTTP_ROUTE, rule_level=True)
        if why:
            actions.append(None)
            dropped.append(f"rule {index}: {why}")
            continue
        backends = []
        for ref in rule.get("backendRefs") or []:
            target, protocol, problem = _backend(ref, namespace, services, grants, kind)
            if pooled and problem is not None and problem.reason == "BackendNotFound" and _is_absent(ref, namespace,
                                                                                                   services):
                target, problem = Target(ref.get("namespace") or namespace, ref.get("name", ""), ref.get("port")), None
                protocol = "h2c" if kind == GRPC_ROUTE else "http/1.1"   # another cluster's port: gRPC is h2c
                elsewhere.append(target.key)
            bfilters, bwhy = _filters(ref.get("filters") or [], allow_redirect=False, rule_level=False)
            if bwhy:
                problem = problem or Condition("ResolvedRefs", False, "UnsupportedValue", f"backendRef: {bwhy}")
                target = None
            if problem:
                problems.append(problem)
            if target and target.key not in elsewhere:
                targets.add(target)
            backends.append(routetable.Backend(target.key if target else "", ref.get("weight", 1), tuple(bfilters),
                                               protocol))
        extension = next((f for f in rule.get("filters") or [] if f.get("type") == "ExtensionRef"), None)
        if extension:               # a filter that cannot be resolved is never skipped: its requests get 500
            ext = extension.get("extensionRef") or {}
            problems.append(Condition("ResolvedRefs", False, "InvalidKind",
                                      f"rule {index}: filter {ext.get('group')}/{ext.get('kind')} "
                                      f"{ext.get('name')} is not known to mysocketd"))
            backends = [routetable.Backend("", 1)]
        actions.append(routetable.Action(tuple(filters), tuple(backends)))
    resolved = problems[0] if problems else Condition(
        "ResolvedRefs", True, "ResolvedRefs",
        f"not in this cluster, left to the pool's other clusters: {', '.join(sorted(set(elsewhere)))}"
        if elsewhere else "")
    if len(problems) > 1:
        resolved = dataclasses.replace(resolved, message="; ".join(p.message for p in problems))
    return Rules(tuple(actions), resolved, tuple(dropped), frozenset(targets), kind)


def _is_absent(ref, namespace, services):
    return (ref.get("group") or "", ref.get("kind") or "Service") == ("", "Service") and \
        services.get((ref.get("namespace") or namespace, ref.get("name", ""))) is None


def _backend(ref, namespace, services_, grants, route_kind=HTTP_ROUTE):
    """(Target, what its port speaks, None) when the ref is valid, else (None, "", the ResolvedRefs condition
    saying why). The protocol is the port's appProtocol or the Service's mysocket.io/upstream-protocol
    (lib/services.backend_protocol): "h2c" or "http/1.1"."""
    target, port_spec, problem = _service_port(ref, namespace, services_, grants, route_kind)
    if problem:
        return None, "", problem
    if route_kind not in (HTTP_ROUTE, GRPC_ROUTE):
        return target, "", None
    where = f"Service {target.namespace}/{target.service} port {target.port}"
    allowed = SUPPORTED_APP_PROTOCOLS if route_kind == HTTP_ROUTE else GRPC_APP_PROTOCOLS
    if port_spec.get("appProtocol") not in allowed:
        return None, "", Condition("ResolvedRefs", False, "UnsupportedProtocol",
                                   f"{where}: appProtocol {port_spec['appProtocol']} is not served")
    service = services_[(target.namespace, target.service)]
    try:
        protocol = services.backend_protocol(service, port_spec, grpc=route_kind == GRPC_ROUTE)
    except services.InvalidAnnotation as e:
        return None, "", Condition("ResolvedRefs", False, "UnsupportedProtocol", f"{where}: {e}")
    return target, protocol, None


def _service_port(ref, namespace, services, grants, route_kind):
    """(Target, its port's spec, None) when the ref names a Service port it may, else (None, None, why)."""
    group, kind = ref.get("group") or "", ref.get("kind") or "Service"
    ns, name, port = ref.get("namespace") or namespace, ref.get("name", ""), ref.get("port")
    where = f"{ns}/{name}"
    if (group, kind) != ("", "Service"):
        return None, None, Condition("ResolvedRefs", False, "InvalidKind",
                                     f"backendRef {where}: only Services are backends, not {group or 'core'}/{kind}")
    if not refgrants.permitted(grants, refgrants.Ref(GROUP, route_kind[1], namespace),
                               refgrants.Ref("", "Service", ns, name)):
        return None, None, Condition("ResolvedRefs", False, "RefNotPermitted",
                                     f"Service {where} is in another namespace and no ReferenceGrant there allows it")
    service = services.get((ns, name))
    if service is None:
        return None, None, Condition("ResolvedRefs", False, "BackendNotFound", f"Service {where} does not exist")
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None, None, Condition("ResolvedRefs", False, "BackendNotFound",
                                     f"Service {where} is an ExternalName: not served "
                                     "(it could point mysocketd anywhere)")
    port_spec = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if port is None or port_spec is None:
        return None, None, Condition("ResolvedRefs", False, "BackendNotFound", f"Service {where} has no port {port}")
    return Target(ns, name, port), port_spec, None


def _filters(specs, allow_redirect, rule_level):
    """(the edge's filter dicts, None) or ([], why the rule cannot be served). Redirects and rewrites are an
    HTTPRoute rule's; an ExtensionRef (left to the caller: its rule answers 500) any rule's, never a backend's."""
    out = []
    for spec in specs:
        kind = spec.get("type")
        if kind in HEADER_FILTERS:
            body = spec.get(kind[0].lower() + kind[1:]) or {}
            out.append({"type": kind, "set": list(body.get("set") or []), "add": list(body.get("add") or []),
                        "remove": list(body.get("remove") or [])})
        elif kind == "RequestRedirect" and allow_redirect:
            body = spec.get("requestRedirect") or {}
            out.append({"type": kind, "scheme": body.get("scheme") or "", "hostname": body.get("hostname") or "",
                        "port": body.get("port") or 0, "path": _path_modifier(body.get("path")),
                        "statusCode": body.get("statusCode") or 302})
        elif kind == "URLRewrite" and allow_redirect:
            body = spec.get("urlRewrite") or {}
            out.append({"type": kind, "hostname": body.get("hostname") or "",
                        "path": _path_modifier(body.get("path"))})
        elif kind == "ExtensionRef" and rule_level:
            continue                    # handled by the caller: the rule answers 500
        else:
            return [], f"filter {kind} is not supported by mysocketd"
    return out, None


def _path_modifier(path):
    if not path:
        return None
    kind = path.get("type")
    value = path.get("replaceFullPath") if kind == "ReplaceFullPath" else path.get("replacePrefixMatch")
    return {"type": kind, "value": value or ""}


def _match(spec):
    path = spec.get("path") or {}
    return routetable.Match(
        path_type=path.get("type") or routetable.PATH_PREFIX, path=path.get("value") or "/",
        method=spec.get("method") or "",
        headers=tuple(routetable.ValueMatch(h.get("name", ""), h.get("value", ""), h.get("type") or "Exact")
                      for h in spec.get("headers") or []),
        query=tuple(routetable.ValueMatch(q.get("name", ""), q.get("value", ""), q.get("type") or "Exact")
                    for q in spec.get("queryParams") or []))


def entries(route, rules_, listener, match=None):
    """The route's table entries on `listener` (unordered: lib.routetable.ordered sorts a listener's).
    `match`: a match spec -> routetable.Match (a GRPCRoute's: lib/grpcroutes.match); an HTTPRoute's by default."""
    match = match or _match
    meta = route.get("metadata") or {}
    origin_route = "{}/{}".format(*key_of(route))
    names = effective_hostnames(route_hostnames(route), listener)
    out = []
    for index, (rule, action) in enumerate(zip((route.get("spec") or {}).get("rules") or [], rules_.actions)):
        if action is None:
            continue
        for m_index, spec in enumerate(rule.get("matches") or [{}]):
            translated = match(spec)
            origin = routetable.Origin(meta.get("creationTimestamp", ""), origin_route, index, m_index)
            out.extend(routetable.Entry(name, translated, action, origin) for name in names)
    return out


def parent_status(parent, rules_, generation, previous=(), now=None):
    """One entry of status.parents: Accepted (and ResolvedRefs, PartiallyInvalid) for `parent`."""
    accepted = parent.accepted
    if accepted.status and rules_.accepted_problem:
        accepted = rules_.accepted_problem
    conds = [accepted, rules_.resolved_refs]
    if accepted.status and rules_.dropped:
        conds.append(Condition("PartiallyInvalid", True, "UnsupportedValue",
                               "Dropped Rule(s): " + "; ".join(rules_.dropped)))
    return {"parentRef": parent.ref, "controllerName": CONTROLLER_NAME,
            "conditions": conditions.render(conds, generation, previous, now)}
