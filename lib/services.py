"""Service -> desired exposure.

A pure function over the Service as the API serves it (a dict), so that every
rule about annotations lives in one place and is table-tested without a
cluster. It never talks to anything: reading the protected-socket Secret and
everything remote happens in the controller, after validation said yes.

A bad value raises `InvalidAnnotation` naming the annotation and the reason in
words a user can act on; the controller turns it into a Warning Event on that
Service and carries on with the others.

A typo in an option must not take a working public name down, so the options
that were last valid are written on the Service (`mysocket.io/last-valid`) and
`last_valid_exposure` resolves them against the Service as it is *now*: its
current ClusterIP and ports, never an address it has released. Two mistakes
keep nothing: an `enabled` value that is neither "true" nor "false" (only
"true" exposes), and a Service with no ClusterIP (there is nothing to forward to).
"""

import dataclasses
import json
import re

PREFIX = "mysocket.io/"
ENABLED = PREFIX + "enabled"
PORT = PREFIX + "port"
TYPE = PREFIX + "type"
CLOUD_AUTH_EMAILS = PREFIX + "cloud-auth-emails"
CLOUD_AUTH_DOMAINS = PREFIX + "cloud-auth-domains"
PROTECTED_SECRET = PREFIX + "protected-secret"
RETAIN = PREFIX + "retain"
POOL = PREFIX + "pool"
UPSTREAM_PROTOCOL = PREFIX + "upstream-protocol"
HOSTNAMES = PREFIX + "hostnames"            # custom names outside the edge's zone, proven by DNS (edge/README.md)
# Written by the controller.
DNSNAME = PREFIX + "dnsname"
SERVED_BY = PREFIX + "served-by"
SOCKET_ID = PREFIX + "socket-id"
TUNNEL_ID = PREFIX + "tunnel-id"
LAST_VALID = PREFIX + "last-valid"
FINALIZER = PREFIX + "cleanup"
LOAD_BALANCER_CLASS = "mysocket.io/tunnel"

SOCKET_TYPES = ("http", "https", "tcp", "tls")
UPSTREAM_PROTOCOLS = ("http/1.1", "h2c")
H2C_APP_PROTOCOL = "kubernetes.io/h2c"      # the Kubernetes convention for HTTP/2 without TLS
_EMAIL = re.compile(r"^[^@\s,]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


OPTIONS = (PORT, TYPE, CLOUD_AUTH_EMAILS, CLOUD_AUTH_DOMAINS, PROTECTED_SECRET, RETAIN, POOL, UPSTREAM_PROTOCOL,
           HOSTNAMES)


class InvalidAnnotation(ValueError):
    """A user-fixable problem with one Service; the message says what to change.

    `keeps_tunnel`: whether the last valid options may go on serving meanwhile.
    """

    def __init__(self, annotation, reason, keeps_tunnel=True):
        super().__init__(f"{annotation}: {reason}")
        self.annotation = annotation
        self.reason = reason
        self.keeps_tunnel = keeps_tunnel


@dataclasses.dataclass(frozen=True)
class Exposure:
    """What the user asked for, resolved against the Service's spec."""

    namespace: str
    name: str
    cluster_ip: str
    port: int
    socket_type: str = "http"
    cloud_auth_emails: tuple = ()
    cloud_auth_domains: tuple = ()
    protected_secret: str = ""
    retain: bool = False
    load_balancer: bool = False
    pool: str = ""              # a name several clusters serve together (one socket per account and pool)
    upstream_protocol: str = "http/1.1"     # what the port speaks: "http/1.1" or "h2c" (gRPC)
    hostnames: tuple = ()       # custom names the socket should also answer to, once proven (lib/customnames)


def key_of(service):
    meta = service["metadata"]
    return meta.get("namespace", ""), meta["name"]


def opted_in(service):
    """True when the user asked for exposure, whether or not the rest is valid."""
    annotations = service["metadata"].get("annotations") or {}
    if annotations.get(ENABLED, "").strip().lower() == "true":
        return True
    return of_our_class(service)


def concerns_us(service):
    """True for a Service mysocketd has anything to do with: asked for (even with a bad value), or carrying
    anything mysocketd wrote (an annotation, the finalizer, the condition). The rest of a large cluster
    is only counted, never reconciled (lib/watcher.py)."""
    meta = service["metadata"]
    annotations = meta.get("annotations") or {}
    return (ENABLED in annotations or of_our_class(service) or FINALIZER in (meta.get("finalizers") or [])
            or any(k in annotations for k in (DNSNAME, SOCKET_ID, TUNNEL_ID, LAST_VALID, SERVED_BY))
            or has_condition(service, "mysocket.io/Serving"))


def has_condition(service, kind):
    return find_condition(service, kind) is not None


def find_condition(service, kind):
    return next((c for c in (service.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def of_our_class(service):
    """A LoadBalancer of class mysocket.io/tunnel: the only Services whose status.loadBalancer is ours to write."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") == LOAD_BALANCER_CLASS


def retained(service):
    annotations = service["metadata"].get("annotations") or {}
    return annotations.get(RETAIN, "").strip().lower() == "true"


def desired_exposure(service):
    """The Exposure the Service asks for, None when it asks for none, or InvalidAnnotation."""
    annotations = service["metadata"].get("annotations") or {}
    spec = service.get("spec") or {}
    enabled = annotations.get(ENABLED)
    if enabled_is_invalid(service):
        raise InvalidAnnotation(ENABLED, f'must be "true" or "false", not {_show(enabled)}; until it is, the '
                                         "Service is not exposed (its socket and name are kept)", keeps_tunnel=False)
    if not opted_in(service):
        return None

    namespace, name = key_of(service)
    cluster_ip = _cluster_ip(spec)
    port = _port(spec, annotations.get(PORT))
    return Exposure(
        namespace=namespace,
        name=name,
        cluster_ip=cluster_ip,
        port=int(port["port"]),
        socket_type=_socket_type(annotations.get(TYPE)),
        cloud_auth_emails=_list(annotations.get(CLOUD_AUTH_EMAILS), CLOUD_AUTH_EMAILS, _EMAIL, "an e-mail address"),
        cloud_auth_domains=_list(annotations.get(CLOUD_AUTH_DOMAINS), CLOUD_AUTH_DOMAINS, _DOMAIN, "a domain name"),
        protected_secret=_secret_name(annotations.get(PROTECTED_SECRET)),
        retain=_bool(annotations.get(RETAIN), RETAIN),
        load_balancer=of_our_class(service),
        pool=_pool(annotations.get(POOL)),
        upstream_protocol=_upstream_protocol(annotations.get(UPSTREAM_PROTOCOL), port),
        hostnames=_hostnames(annotations.get(HOSTNAMES)),
    )


def enabled_is_invalid(service):
    """An `enabled` value that is neither "true" nor "false": in doubt, so neither exposed nor cleaned up."""
    value = (service["metadata"].get("annotations") or {}).get(ENABLED)
    return value is not None and value.strip().lower() not in ("true", "false")


def options_of(service):
    """The user's option annotations as they are (what LAST_VALID records once they proved valid)."""
    annotations = service["metadata"].get("annotations") or {}
    return {k: annotations[k] for k in OPTIONS if k in annotations}


def last_valid_exposure(service):
    """The Exposure of the last valid options, resolved against the Service as it is now; None if there
    are none, or if they no longer fit it (its ClusterIP or port is gone)."""
    try:
        recorded = json.loads((service["metadata"].get("annotations") or {}).get(LAST_VALID) or "null")
    except ValueError:
        return None
    if not isinstance(recorded, dict):
        return None
    annotations = {k: v for k, v in (service["metadata"].get("annotations") or {}).items() if k not in OPTIONS}
    annotations.update({k: v for k, v in recorded.items() if k in OPTIONS and isinstance(v, str)})
    try:
        return desired_exposure({**service, "metadata": {**service["metadata"], "annotations": annotations}})
    except InvalidAnnotation:
        return None


def _cluster_ip(spec):
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        raise InvalidAnnotation(ENABLED, "an ExternalName Service has no ClusterIP to forward to; "
                                         "expose a Service that selects pods", keeps_tunnel=False)
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        raise InvalidAnnotation(ENABLED, "a headless Service (clusterIP: None) has no ClusterIP to forward to; "
                                         "expose a Service with a ClusterIP", keeps_tunnel=False)
    return ip


def _port(spec, wanted):
    ports = spec.get("ports") or []
    if not ports:
        raise InvalidAnnotation(PORT, "the Service has no ports")
    if wanted is None or not wanted.strip():
        chosen = ports[0]
    else:
        wanted = wanted.strip()
        matches = [p for p in ports if p.get("name") == wanted or str(p.get("port")) == wanted]
        if not matches:
            known = ", ".join(str(p.get("name") or p.get("port")) for p in ports)
            raise InvalidAnnotation(PORT, f"{_show(wanted)} is neither the name nor the number of a port "
                                          f"of this Service (it has: {known})")
        chosen = matches[0]
    if chosen.get("protocol", "TCP") != "TCP":
        raise InvalidAnnotation(PORT, f"port {chosen.get('port')} is {chosen.get('protocol')}; "
                                      "ssh can only forward TCP")
    return chosen


def backend_protocol(service, port, grpc=False):
    """What a route's backend port speaks, as for an exposed Service (the annotation, then the port's
    appProtocol); a GRPCRoute's backend without either speaks h2c, since gRPC is HTTP/2.
    Raises InvalidAnnotation for an annotation that names no protocol."""
    value = ((service.get("metadata") or {}).get("annotations") or {}).get(UPSTREAM_PROTOCOL)
    if grpc and (value is None or not value.strip()) and not port.get("appProtocol"):
        return "h2c"
    return _upstream_protocol(value, port)


def _upstream_protocol(value, port):
    """What the exposed port speaks: the annotation if set (for a port a user cannot change),
    else h2c for the port's `appProtocol: kubernetes.io/h2c`, else HTTP/1.1."""
    if value is None or not value.strip():
        return "h2c" if port.get("appProtocol") == H2C_APP_PROTOCOL else "http/1.1"
    value = value.strip().lower()
    if value not in UPSTREAM_PROTOCOLS:
        raise InvalidAnnotation(UPSTREAM_PROTOCOL, f'must be "h2c" (HTTP/2 without TLS, e.g. gRPC) or '
                                                   f'"http/1.1", not {_show(value)}')
    return value


def _socket_type(value):
    if value is None or not value.strip():
        return "http"
    value = value.strip().lower()
    if value not in SOCKET_TYPES:
        raise InvalidAnnotation(TYPE, f"must be one of {', '.join(SOCKET_TYPES)}, not {_show(value)}")
    return value


def _list(value, annotation, pattern, what):
    if value is None:
        return ()
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        if not pattern.match(item):
            raise InvalidAnnotation(annotation, f"{_show(item)} is not {what} (expected a comma-separated list)")
    return tuple(sorted(set(items)))


def _secret_name(value):
    if value is None or not value.strip():
        return ""
    value = value.strip()
    if not _DNS_SUBDOMAIN.match(value):
        raise InvalidAnnotation(PROTECTED_SECRET, f"{_show(value)} is not a valid Secret name")
    return value


_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _pool(value):
    if value is None or not value.strip():
        return ""
    value = value.strip()
    if not _DNS_LABEL.match(value):
        raise InvalidAnnotation(POOL, f"{_show(value)} is not a pool name (lower-case letters, digits and '-', "
                                      "at most 63)")
    return value


_HOSTNAME = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _hostnames(value):
    """`mysocket.io/hostnames`: comma-separated host names, each at least two labels, no wildcard (a
    wildcard cannot be proven by one DNS record); the edge refuses names under its own zone itself."""
    if value is None:
        return ()
    items = tuple(item.strip().lower().rstrip(".") for item in value.split(",") if item.strip())
    for item in items:
        if item.startswith("*."):
            raise InvalidAnnotation(HOSTNAMES, f"{_show(item)} is a wildcard: name each host (a wildcard cannot "
                                               "be proven by one DNS record)")
        if len(item) > 253 or not _HOSTNAME.match(item):
            raise InvalidAnnotation(HOSTNAMES, f"{_show(item)} is not a host name such as app.example.org "
                                               "(expected a comma-separated list)")
    return tuple(sorted(set(items)))


def _bool(value, annotation):
    if value is None:
        return False
    if value.strip().lower() not in ("true", "false"):
        raise InvalidAnnotation(annotation, f'must be "true" or "false", not {_show(value)}')
    return value.strip().lower() == "true"


def _show(value, limit=40):
    """Quote a user's value for a message, cut so 1,000 bytes of noise stay readable."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"...' ({len(value)} characters)"
