"""Ingress -> the same route table a Gateway gets (lib/routetable), one public socket per Ingress.

An Ingress is mysocketd's when its class is: `spec.ingressClassName`, or the
older annotation `kubernetes.io/ingress.class`, names an IngressClass whose
`spec.controller` is `mysocket.io/ingress`; an Ingress without either is ours
when such a class is the cluster's default
(`ingressclass.kubernetes.io/is-default-class: "true"`).

Mapping, so that an Ingress behaves as its users expect from other controllers:
- every rule (host, paths) becomes entries on an HTTP listener (port 80) and
  an HTTPS listener (port 443). HTTPS uses the Secret of the `tls` entry that
  names the host, and the edge's own certificate for the socket's public name
  otherwise (a listener without certificates);
- `Exact` paths stay exact, `Prefix` and `ImplementationSpecific` are
  element-wise prefixes; the spec's order (longest path, Exact before Prefix)
  is the table's own (lib/routetable.precedence);
- `defaultBackend` takes what no rule takes, whatever the host;
- a backend that cannot be resolved (no such Service or port, a `resource`
  backend) keeps its rule and answers 500, and a Warning says why.
Wildcard hosts match as Gateway API hostnames do (`*.example.com` also takes
`a.b.example.com`, where the Ingress spec says one label only).
"""

import dataclasses

from lib import gateways, hostnames, routetable
from lib.httproutes import Target

CONTROLLER = "mysocket.io/ingress"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


@dataclasses.dataclass(frozen=True)
class IngressPlan:
    namespace: str
    name: str
    listeners: tuple                    # routetable.Listener
    targets: frozenset                  # httproutes.Target
    problems: tuple = ()                # one line each, for Warning Events

    @property
    def table(self):
        return routetable.as_json(self.listeners)


def our_classes(ingress_classes):
    """(names of IngressClasses of ours, the name of our default one or None)."""
    names, default = [], None
    for klass in ingress_classes:
        if (klass.get("spec") or {}).get("controller") != CONTROLLER:
            continue
        meta = klass.get("metadata") or {}
        names.append(meta.get("name"))
        if (meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            default = meta.get("name")
    return names, default


def is_ours(ingress, ingress_classes):
    names, default = our_classes(ingress_classes)
    wanted = (ingress.get("spec") or {}).get("ingressClassName") or \
        ((ingress.get("metadata") or {}).get("annotations") or {}).get(CLASS_ANNOTATION)
    return wanted in names if wanted else default is not None


def plan(ingress, services, secrets):
    """The Ingress's table. `services`: {(ns, name): Service}; `secrets`: {(ns, name): Secret | UNREADABLE}."""
    meta = ingress.get("metadata") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    spec = ingress.get("spec") or {}
    origin_route = f"{ns}/{name}"
    created = meta.get("creationTimestamp", "")
    problems, targets, entries = [], set(), []
    for r_index, rule in enumerate(spec.get("rules") or []):
        host = hostnames.normalize(rule.get("host"))
        for p_index, path in enumerate(((rule.get("http") or {}).get("paths")) or []):
            action = _action(path.get("backend") or {}, ns, services, problems, targets)
            kind = routetable.PATH_EXACT if path.get("pathType") == "Exact" else routetable.PATH_PREFIX
            match = routetable.Match(path_type=kind, path=path.get("path") or "/")
            entries.append(routetable.Entry(host, match, action, routetable.Origin(created, origin_route,
                                                                                     r_index, p_index)))
    if spec.get("defaultBackend"):
        action = _action(spec["defaultBackend"], ns, services, problems, targets)
        entries.append(routetable.Entry(hostnames.ANY, routetable.Match(), action,
                                        routetable.Origin(created, origin_route, 1 << 20, 0)))
    listeners = [routetable.Listener("http", 80, "HTTP", hostnames.ANY, (), routetable.ordered(entries))]
    for t_index, tls in enumerate(spec.get("tls") or []):
        secret_name = tls.get("secretName")
        pair = _certificate(ns, secret_name, secrets, problems) if secret_name else None
        if pair is None:
            continue
        for host in tls.get("hosts") or []:
            host = hostnames.normalize(host)
            scoped = [e for e in entries if hostnames.intersect(e.hostname, host) is not None]
            scoped = [dataclasses.replace(e, hostname=hostnames.intersect(e.hostname, host)) for e in scoped]
            listeners.append(routetable.Listener(f"https-{t_index}-{host}", 443, "HTTPS", host, (pair,),
                                                 routetable.ordered(scoped)))
    listeners.append(routetable.Listener("https", 443, "HTTPS", hostnames.ANY, (), routetable.ordered(entries)))
    return IngressPlan(ns, name, tuple(listeners), frozenset(targets), tuple(problems))


def _action(backend, namespace, services, problems, targets):
    service = backend.get("service")
    if not service:
        problems.append("a resource backend is not served (only Services are): its requests get 500")
        return routetable.Action((), (routetable.Backend("", 1),))
    name = service.get("name", "")
    port_ref = service.get("port") or {}
    svc = services.get((namespace, name))
    if svc is None:
        problems.append(f"Service {name} does not exist: its requests get 500")
        return routetable.Action((), (routetable.Backend("", 1),))
    ports = (svc.get("spec") or {}).get("ports") or []
    if port_ref.get("name"):
        found = next((p for p in ports if p.get("name") == port_ref["name"]), None)
    else:
        found = next((p for p in ports if p.get("port") == port_ref.get("number")), None)
    if found is None or (svc.get("spec") or {}).get("type") == "ExternalName":
        problems.append(f"Service {name} has no port {port_ref.get('name') or port_ref.get('number')} to serve: "
                        "its requests get 500")
        return routetable.Action((), (routetable.Backend("", 1),))
    target = Target(namespace, name, found["port"])
    targets.add(target)
    return routetable.Action((), (routetable.Backend(target.key, 1),))


def _certificate(namespace, secret_name, secrets, problems):
    secret = secrets.get((namespace, secret_name))
    if secret is gateways.UNREADABLE:
        problems.append(f"mysocketd may not read Secret {secret_name}: give it get on Secrets in {namespace} "
                        "(yaml/optional/gateway-tls-rbac.yaml); its hosts get the edge's certificate")
        return None
    pair = gateways.certificate_of(secret) if secret else None
    if pair is None:
        problems.append(f"Secret {secret_name} has no PEM tls.crt and tls.key: its hosts get the edge's certificate")
    return pair


def load_balancer_status(addresses):
    """status.loadBalancer of the Ingress from the edge's addresses of its socket."""
    ingress = [{"ip": a["value"]} if a["type"] == "IPAddress" else {"hostname": a["value"]} for a in addresses]
    return {"loadBalancer": {"ingress": ingress}}
