"""Gateways and Ingresses -> their sockets on the edge: names, options, tables, and each replica's tunnels.

Pure, so the questions the route controller asks are table-tested:

- which socket each Gateway or Ingress of ours wants (`wanted`): its name
  (its own, lib/ownership.route_socket_name, or its pool's), an address of its
  own at the edge, the table and its digest (the edge keeps the digest of the
  table it has: equal digests, nothing to send); and each TCP listener of a
  Gateway its own `tcp` socket, with no table (lib/tcproutes.py);
- where each backend's traffic goes (`forward_targets`): a Service with a
  ClusterIP is forwarded to that (kube-proxy spreads over its pods, as for an
  exposed Service); a headless Service to each ready endpoint, one tunnel each;
- which tunnels this replica must make or drop on a socket (`tunnel_changes`).
  A backend is a group of tunnels (`backend` on the edge's tunnel); this
  replica's tunnel in it is tagged `<cluster>/route/<replica>/<backend>`
  (`#<endpoint>` for a headless one), a shape lib/replicas.TunnelOwner never
  parses, so the Service sweep leaves it alone.
"""

import dataclasses
import hashlib
import json

from lib import ingresses
from lib.ownership import pool_socket_name, route_socket_name

POOL_ANNOTATION = "mysocket.io/pool"
TAG_KIND = "route"


@dataclasses.dataclass(frozen=True)
class Wanted:
    kind: str                           # "gateway" | "ingress" | "gateway-tcp" (one TCP listener)
    namespace: str
    name: str
    socket_name: str
    pool: str
    table: dict
    digest: str
    targets: frozenset                  # lib.httproutes.Target
    socket_type: str = "http"           # "tcp" for a TCP listener: no table, no address of its own

    @property
    def key(self):
        return self.kind, self.namespace, self.name


def digest(table):
    """sha256 of the canonical JSON: what the edge computes for `routes_digest` (edge/routetables.py)."""
    return hashlib.sha256(json.dumps(table, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode()).hexdigest()


def pool_of(obj):
    return (((obj.get("metadata") or {}).get("annotations") or {}).get(POOL_ANNOTATION) or "").strip()


def wanted(cluster, picture, gateway_objects, ingress_plans, ingress_objects):
    """{(kind, ns, name): Wanted} for every accepted Gateway of `picture` and every Ingress plan."""
    out = {}
    by_key = {(g["metadata"]["namespace"], g["metadata"]["name"]): g for g in gateway_objects}
    for key, plan in picture.gateways.items():
        if not plan.verdict.accepted.status:
            continue
        pool = pool_of(by_key.get(key) or {})
        table = plan.table
        out[("gateway", *key)] = Wanted("gateway", key[0], key[1],
                                         pool_socket_name(pool) if pool else route_socket_name(cluster, "gateway",
                                                                                               *key),
                                         pool, table, digest(table), plan.targets)
        for lis in plan.tcp:
            name = tcp_name(key[1], lis.name)
            out[("gateway-tcp", key[0], name)] = Wanted(
                "gateway-tcp", key[0], name, route_socket_name(cluster, "gateway-tcp", key[0], name), "", None, "",
                frozenset([lis.target] if lis.target else []), socket_type="tcp")
    ing_by_key = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in ingress_objects}
    for plan in ingress_plans:
        key = (plan.namespace, plan.name)
        pool = pool_of(ing_by_key.get(key) or {})
        table = plan.table
        out[("ingress", *key)] = Wanted("ingress", key[0], key[1],
                                         pool_socket_name(pool) if pool else route_socket_name(cluster, "ingress",
                                                                                               *key),
                                         pool, table, digest(table), plan.targets)
    return out


def tcp_name(gateway, listener):
    """What a TCP listener's socket is named after: `<gateway>:<listener>` (neither name can hold a ':').

    Its socket is this cluster's alone even when the Gateway is in a pool: each cluster gets its own port."""
    return f"{gateway}:{listener}"


def socket_fields(want):
    """The body of POST /socket for a route socket: an http socket with an address of its own (its table is
    judged by the address a visitor came to), or a TCP listener's tcp socket (its port is its own already)."""
    return {"name": want.socket_name, "socket_type": want.socket_type, "own_address": want.socket_type == "http",
            "unique_name": True,
            "protected_socket": False, "protected_username": "", "protected_password": "",
            "cloud_authentication_enabled": False, "cloud_authentication_email_allowed_addressses": [],
            "cloud_authentication_email_allowed_domains": []}


def custom_names(table, dnsname, limit=20):
    """The exact names a route table answers for that the edge must be told as the socket's custom
    hostnames (proven by DNS before it serves them on its shared addresses: edge/README.md, "Custom
    hostnames"). Wildcards cannot be proven by one record, and names under the edge's own zone (the
    part of the socket's dnsname after its first label) are the edge's already."""
    zone = dnsname.split(".", 1)[1] if "." in dnsname else ""
    names = set()
    for listener in (table or {}).get("listeners") or []:
        for name in [listener.get("hostname")] + [r.get("hostname") for r in listener.get("routes") or []]:
            if name and not name.startswith("*.") and "." in name and not (
                    zone and (name == zone or name.endswith("." + zone))):
                names.add(name)
    return tuple(sorted(names))[:limit]


def addresses(socket):
    """The socket's addresses at the edge, as a Gateway's status lists them (its own address first)."""
    out = []
    if socket.get("address"):
        out.append({"type": "IPAddress", "value": socket["address"]})
    if socket.get("dnsname"):
        out.append({"type": "Hostname", "value": socket["dnsname"]})
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class TunnelTag:
    cluster: str
    replica: str
    backend: str                        # namespace/service:port
    endpoint: str = ""                  # a headless Service's endpoint address

    @property
    def tag(self):
        suffix = f"#{self.endpoint}" if self.endpoint else ""
        return f"{self.cluster}/{TAG_KIND}/{self.replica}/{self.backend}{suffix}"

    @classmethod
    def parse(cls, tag):
        parts = (tag or "").split("/", 3)
        if len(parts) != 4 or parts[1] != TAG_KIND or not all(parts):
            return None
        backend, _, endpoint = parts[3].partition("#")
        return cls(parts[0], parts[2], backend, endpoint)


@dataclasses.dataclass(frozen=True)
class Forward:
    """Where one tunnel of a backend goes: ssh -R <local_port>:<host>:<port>."""

    backend: str
    host: str
    port: int
    endpoint: str = ""                  # set for a headless Service (one tunnel per endpoint)


def forward_targets(target, service, slices):
    """The Forwards of one backend (lib.httproutes.Target) given its Service and EndpointSlices.

    [] when there is nothing to forward to: no Service, no such port, or a headless Service with no
    ready endpoint. `slices`: the Service's EndpointSlice objects."""
    if service is None:
        return []
    spec = service.get("spec") or {}
    port = next((p for p in spec.get("ports") or [] if p.get("port") == target.port), None)
    if port is None:
        return []
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        return [Forward(target.key, cluster_ip, target.port)]
    out = set()
    for es in slices:
        if es.get("addressType") not in ("IPv4", None):
            continue
        number = next((p.get("port") for p in es.get("ports") or [] if (p.get("name") or "") == (port.get("name")
                                                                                              or "")), None)
        if number is None:
            continue
        for endpoint in es.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                out.add(Forward(target.key, address, number, address))
    return sorted(out, key=lambda f: (f.host, f.port))


def tunnel_changes(socket, forwards, cluster, replica):
    """(forwards that need a tunnel of this replica, this replica's tunnels on `socket` that no forward uses)."""
    mine = {}
    for tunnel in socket.get("tunnels") or []:
        tag = TunnelTag.parse(tunnel.get("owner"))
        if tag is not None and tag.cluster == cluster and tag.replica == replica:
            mine[(tag.backend, tag.endpoint)] = tunnel
    wanted_keys = {(f.backend, f.endpoint) for f in forwards}
    missing = [f for f in forwards if (f.backend, f.endpoint) not in mine]
    extra = [t for k, t in sorted(mine.items()) if k not in wanted_keys]
    return missing, extra


def own_tunnel(socket, forward, cluster, replica):
    tag = TunnelTag(cluster, replica, forward.backend, forward.endpoint).tag
    return next((t for t in socket.get("tunnels") or [] if t.get("owner") == tag), None)


def ingress_plans(ingress_objects, ingress_classes, services, secrets):
    """The plans of the Ingresses of our classes."""
    return [ingresses.plan(i, services, secrets) for i in ingress_objects if ingresses.is_ours(i, ingress_classes)]
