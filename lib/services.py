"""Service -> desired exposure.

A pure function over the Service as the API serves it (a dict), so that every
rule about annotations lives in one place and is table-tested without a
cluster. It never talks to anything: reading the protected-socket Secret and
everything remote happens in the controller, after validation said yes.

A bad value raises `InvalidAnnotation` naming the annotation and the reason in
words a user can act on; the controller turns it into a Warning Event on that
Service and carries on with the others.
"""

import dataclasses
import re

PREFIX = "mysocket.io/"
ENABLED = PREFIX + "enabled"
PORT = PREFIX + "port"
TYPE = PREFIX + "type"
CLOUD_AUTH_EMAILS = PREFIX + "cloud-auth-emails"
CLOUD_AUTH_DOMAINS = PREFIX + "cloud-auth-domains"
PROTECTED_SECRET = PREFIX + "protected-secret"
RETAIN = PREFIX + "retain"
# Written by the controller.
DNSNAME = PREFIX + "dnsname"
SOCKET_ID = PREFIX + "socket-id"
TUNNEL_ID = PREFIX + "tunnel-id"
FINALIZER = PREFIX + "cleanup"
LOAD_BALANCER_CLASS = "mysocket.io/tunnel"

SOCKET_TYPES = ("http", "https", "tcp", "tls")
_EMAIL = re.compile(r"^[^@\s,]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


class InvalidAnnotation(ValueError):
    """A user-fixable problem with one Service; the message says what to change."""

    def __init__(self, annotation, reason):
        super().__init__(f"{annotation}: {reason}")
        self.annotation = annotation
        self.reason = reason


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


def key_of(service):
    meta = service["metadata"]
    return meta["namespace"], meta["name"]


def opted_in(service):
    """True when the user asked for exposure, whether or not the rest is valid."""
    annotations = service["metadata"].get("annotations") or {}
    if annotations.get(ENABLED, "").strip().lower() == "true":
        return True
    return of_our_class(service)


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
    if enabled is not None and enabled.strip().lower() not in ("true", "false"):
        raise InvalidAnnotation(ENABLED, f'must be "true" or "false", not {_show(enabled)}')
    if not opted_in(service):
        return None

    namespace, name = key_of(service)
    return Exposure(
        namespace=namespace,
        name=name,
        cluster_ip=_cluster_ip(spec),
        port=_port(spec, annotations.get(PORT)),
        socket_type=_socket_type(annotations.get(TYPE)),
        cloud_auth_emails=_list(annotations.get(CLOUD_AUTH_EMAILS), CLOUD_AUTH_EMAILS, _EMAIL, "an e-mail address"),
        cloud_auth_domains=_list(annotations.get(CLOUD_AUTH_DOMAINS), CLOUD_AUTH_DOMAINS, _DOMAIN, "a domain name"),
        protected_secret=_secret_name(annotations.get(PROTECTED_SECRET)),
        retain=_bool(annotations.get(RETAIN), RETAIN),
        load_balancer=of_our_class(service),
    )


def _cluster_ip(spec):
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        raise InvalidAnnotation(ENABLED, "an ExternalName Service has no ClusterIP to forward to; "
                                         "expose a Service that selects pods")
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        raise InvalidAnnotation(ENABLED, "a headless Service (clusterIP: None) has no ClusterIP to forward to; "
                                         "expose a Service with a ClusterIP")
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
    return int(chosen["port"])


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
