"""GatewayClass and Gateway -> what the edge can serve, and the conditions that say so.

Pure functions over the objects as the API serves them (dicts), so that every
rule of the spec about classes and listeners lives here and is table-tested
without a cluster. What the edge serves decides what is valid: one public
socket per Gateway, whose HTTP front is port 80 and whose HTTPS/TLS front is
port 443 (the socket's `socket_tcp_ports`), so an HTTP, HTTPS or TLS listener
on any other port is `PortUnavailable`; HTTP and HTTPS listeners carry
HTTPRoutes, TLS listeners (passthrough by SNI) TLSRoutes.

TCP listeners carry TCPRoutes, each listener a `tcp` socket of its own
(lib/tcproutes.py). The edge gives a tcp socket a port from its range: on an
edge many accounts share, nobody can be promised port 5432. The listener is
still served, only elsewhere, so it is Accepted (not `PortUnavailable`, which
the spec uses for a listener that is *not* served) with a message saying so,
and its Programmed condition names the edge's port once the socket exists.

Certificates: an HTTPS listener names Secrets (`certificateRefs`); the
controller reads them (only where mysocketd may: a Secret it cannot read is
an `InvalidCertificateRef` that says so) and passes them in `secrets`; here
they are checked for shape (a PEM certificate and a PEM private key) and for
permission (another namespace needs a ReferenceGrant). The edge checks that
the key fits the certificate when it loads them.

The verdicts carry no `Programmed` condition: that needs the edge's answer
(lib/gatewaystatus.py assembles the final status).
"""

import base64
import binascii
import dataclasses
import re

from lib import hostnames, refgrants
from lib.conditions import Condition

CONTROLLER_NAME = "mysocket.io/gateway-controller"
GROUP = refgrants.GATEWAY_GROUP
HTTP_ROUTE = (GROUP, "HTTPRoute")
TLS_ROUTE = (GROUP, "TLSRoute")
TCP_ROUTE = (GROUP, "TCPRoute")
GRPC_ROUTE = (GROUP, "GRPCRoute")
# protocol -> (the edge's port for it, None: the edge allocates one per listener; the route kinds it carries).
# GRPCRoutes ride HTTP (h2c with prior knowledge) and HTTPS (h2 by ALPN) listeners: the edge's fronts speak both.
PROTOCOLS = {"HTTP": (80, (HTTP_ROUTE, GRPC_ROUTE)), "HTTPS": (443, (HTTP_ROUTE, GRPC_ROUTE)),
             "TLS": (443, (TLS_ROUTE,)), "TCP": (None, (TCP_ROUTE,))}
UNREADABLE = object()           # a Secret mysocketd may not read (HTTP 403): in `secrets` instead of a dict


@dataclasses.dataclass(frozen=True)
class Certificate:
    cert_pem: str
    key_pem: str


@dataclasses.dataclass(frozen=True)
class AllowedRoutes:
    namespaces_from: str = "Same"               # Same | All | Selector | None
    selector: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Listener:
    """One listener as validated: what routes may attach to it and what the edge gets for it."""

    name: str
    protocol: str
    port: int
    hostname: str                               # hostnames.ANY when none
    tls_mode: str = ""                          # Terminate | Passthrough | "" (HTTP)
    certificates: tuple = ()                    # Certificate, for Terminate
    kinds: tuple = ()                           # (group, kind) it carries: its supportedKinds
    allowed: AllowedRoutes = AllowedRoutes()
    accepted: Condition = None
    resolved_refs: Condition = None
    conflicted: Condition = None

    @property
    def usable(self):
        """Routes may attach (an unresolved certificate does not stop that; the listener then serves nothing)."""
        return self.accepted.status and not self.conflicted.status

    @property
    def serving(self):
        """The edge gets this listener."""
        return self.usable and self.resolved_refs.status


@dataclasses.dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    generation: int
    listeners: tuple
    accepted: Condition


def class_is_ours(gateway_class):
    return (gateway_class.get("spec") or {}).get("controllerName") == CONTROLLER_NAME


def class_accepted(gateway_class):
    """The GatewayClass's Accepted condition (only for classes of our controllerName)."""
    if (gateway_class.get("spec") or {}).get("parametersRef"):
        return Condition("Accepted", False, "InvalidParameters",
                         "mysocketd takes no parameters: remove spec.parametersRef")
    return Condition("Accepted", True, "Accepted", "handled by mysocketd; every Gateway is one socket on the edge")


def validate(gateway, secrets, grants):
    """The Gateway's listeners and its Accepted condition.

    `secrets`: {(namespace, name): Secret dict | UNREADABLE} for the certificate refs the controller could
    read; a ref missing from it does not exist. `grants`: every ReferenceGrant.
    """
    meta = gateway.get("metadata") or {}
    namespace = meta.get("namespace", "")
    spec = gateway.get("spec") or {}
    listeners = [_listener(entry, namespace, secrets, grants) for entry in spec.get("listeners") or []]
    listeners = _mark_conflicts(listeners)
    invalid = "; ".join(f"{lis.name}: {lis.accepted.message or lis.conflicted.message}"
                        for lis in listeners if not lis.usable)
    if spec.get("addresses"):
        accepted = Condition("Accepted", False, "UnsupportedAddress",
                             "spec.addresses: the edge gives every Gateway its own address; remove them")
    elif all(not lis.usable for lis in listeners):
        accepted = Condition("Accepted", False, "ListenersNotValid", "no listener can be served: " + invalid)
    elif invalid:
        accepted = Condition("Accepted", True, "ListenersNotValid", "some listeners cannot be served: " + invalid)
    else:
        accepted = Condition("Accepted", True, "Accepted", "")
    return Gateway(namespace, meta.get("name", ""), meta.get("generation", 0), tuple(listeners), accepted)


def _listener(entry, namespace, secrets, grants):
    name, protocol, port = entry.get("name", ""), entry.get("protocol", ""), entry.get("port", 0)
    hostname = hostnames.normalize(entry.get("hostname"))
    allowed_spec = entry.get("allowedRoutes") or {}
    ns_spec = allowed_spec.get("namespaces") or {}
    allowed = AllowedRoutes(ns_spec.get("from") or "Same", ns_spec.get("selector") or {})
    tls = entry.get("tls") or {}
    no_conflict = Condition("Conflicted", False, "NoConflicts")
    base = dict(name=name, protocol=protocol, port=port, hostname=hostname, allowed=allowed, conflicted=no_conflict)
    if protocol not in PROTOCOLS:
        return Listener(**base, accepted=Condition("Accepted", False, "UnsupportedProtocol",
                                                   f"protocol {protocol} is not served (HTTP, HTTPS, TLS, TCP are)"),
                        resolved_refs=Condition("ResolvedRefs", True, "ResolvedRefs"))
    edge_port, protocol_kinds = PROTOCOLS[protocol]
    kinds, bad_kinds = _kinds(allowed_spec.get("kinds"), protocol_kinds)
    base.update(kinds=kinds)
    resolved = (Condition("ResolvedRefs", False, "InvalidRouteKinds",
                          f"{protocol} listeners carry {', '.join(k for _, k in protocol_kinds)}, not "
                          f"{', '.join(bad_kinds)}")
                if bad_kinds else Condition("ResolvedRefs", True, "ResolvedRefs"))
    mode = ""
    certificates = ()
    if protocol in ("HTTPS", "TLS"):
        mode = tls.get("mode") or "Terminate"
        wanted = "Terminate" if protocol == "HTTPS" else "Passthrough"
        if mode != wanted:
            return Listener(**base, tls_mode=mode, resolved_refs=resolved, accepted=Condition(
                "Accepted", False, "UnsupportedValue", f"tls.mode {mode}: {protocol} listeners here are {wanted}"))
    if edge_port is None:
        return Listener(**base, resolved_refs=resolved, accepted=Condition(
            "Accepted", True, "Accepted", f"port {port} cannot be promised on a shared edge: the edge gives this "
            "listener a port of its own from its range (the Programmed condition says which)"))
    if port != edge_port:
        return Listener(**base, tls_mode=mode, accepted=Condition(
            "Accepted", False, "PortUnavailable", f"the edge serves {protocol} on port {edge_port} only"),
            resolved_refs=resolved)
    if protocol in ("HTTPS", "TLS"):
        if mode == "Terminate":
            certificates, problem = _certificates(tls.get("certificateRefs") or [], namespace, secrets, grants)
            if problem is not None and resolved.status:
                resolved = problem
    return Listener(**base, tls_mode=mode, certificates=certificates, resolved_refs=resolved,
                    accepted=Condition("Accepted", True, "Accepted"))


def _kinds(requested, protocol_kinds):
    """(supported kinds, the names of requested kinds this protocol cannot carry)."""
    if not requested:
        return tuple(protocol_kinds), []
    good, bad = [], []
    for kind in requested:
        group = kind.get("group")
        key = (GROUP if group is None else group, kind.get("kind", ""))
        (good if key in protocol_kinds else bad).append(key)
    return tuple(dict.fromkeys(good)), [k for _, k in bad]


def _certificates(refs, namespace, secrets, grants):
    """(certificates, None) or ((), the ResolvedRefs condition saying why not)."""
    if not refs:
        return (), Condition("ResolvedRefs", False, "InvalidCertificateRef", "an HTTPS listener needs a certificateRef")
    found = []
    for ref in refs:
        group, kind = ref.get("group") or "", ref.get("kind") or "Secret"
        ref_ns, name = ref.get("namespace") or namespace, ref.get("name", "")
        where = f"{ref_ns}/{name}"
        if (group, kind) != ("", "Secret"):
            return (), Condition("ResolvedRefs", False, "InvalidCertificateRef",
                                 f"certificateRef {where}: only core Secrets hold certificates, not {group}/{kind}")
        if not refgrants.permitted(grants, refgrants.Ref(GROUP, "Gateway", namespace),
                                   refgrants.Ref("", "Secret", ref_ns, name)):
            return (), Condition("ResolvedRefs", False, "RefNotPermitted",
                                 f"Secret {where} is in another namespace and no ReferenceGrant there allows it")
        secret = secrets.get((ref_ns, name))
        if secret is UNREADABLE:
            return (), Condition("ResolvedRefs", False, "InvalidCertificateRef",
                                 f"mysocketd may not read Secret {where}: give it get on Secrets in {ref_ns} "
                                 "(yaml/optional/gateway-tls-rbac.yaml)")
        if secret is None:
            return (), Condition("ResolvedRefs", False, "InvalidCertificateRef", f"Secret {where} does not exist")
        pair = certificate_of(secret)
        if pair is None:
            return (), Condition("ResolvedRefs", False, "InvalidCertificateRef",
                                 f"Secret {where} holds no PEM certificate and private key in tls.crt and tls.key")
        found.append(pair)
    return tuple(found), None


_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


def certificate_of(secret):
    """The Secret's tls.crt and tls.key as a Certificate if both are well-formed PEM, else None."""
    data = secret.get("data") or {}
    try:
        cert = base64.b64decode(data.get("tls.crt") or "", validate=True).decode("ascii")
        key = base64.b64decode(data.get("tls.key") or "", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not _pem_blocks(cert, lambda label: label == "CERTIFICATE") or not _pem_blocks(
            key, lambda label: label.endswith("PRIVATE KEY")):
        return None
    return Certificate(cert, key)


def _pem_blocks(text, wanted):
    """Whether `text` has at least one PEM block of a wanted label holding DER (an ASN.1 SEQUENCE)."""
    for label, body in _PEM.findall(text):
        if not wanted(label):
            continue
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            return False
        if der[:1] != b"\x30":
            return False
        return True
    return False


def _mark_conflicts(listeners):
    """Same port and hostname twice (HostnameConflict), HTTP where HTTPS/TLS listen (ProtocolConflict).

    TCP listeners are judged by the ports they ask for, as the spec says, though the edge serves each on
    a port of its own: a Gateway that is valid here stays valid on an implementation that honours ports.

    Only listeners accepted so far take part; the first of a clash keeps its port, the later ones are
    Conflicted (the spec lets an implementation keep one of them)."""
    out, seen = [], {}
    for listener in listeners:
        if not listener.accepted.status:
            out.append(listener)
            continue
        family = _family(listener.protocol)
        clash = None
        for other in seen.get(listener.port, []):
            other_family = _family(other.protocol)
            if other_family != family:
                clash = Condition("Conflicted", True, "ProtocolConflict",
                                  f"port {listener.port} already carries {other.protocol} (listener {other.name})")
            elif other.hostname == listener.hostname:
                clash = Condition("Conflicted", True, "HostnameConflict",
                                  f"listener {other.name} already serves {listener.hostname or 'every hostname'} "
                                  f"on port {listener.port}")
            if clash:
                break
        if clash:
            listener = dataclasses.replace(listener, conflicted=clash, accepted=Condition(
                "Accepted", False, clash.reason, clash.message))
        else:
            seen.setdefault(listener.port, []).append(listener)
        out.append(listener)
    return out


def _family(protocol):
    """Protocols that may share a port (told apart by hostname) are one family."""
    return protocol if protocol in ("HTTP", "TCP") else "TLS"


def allows_namespace(listener, route_namespace, gateway_namespace, namespace_labels):
    """Whether `listener` lets routes from `route_namespace` attach (its allowedRoutes.namespaces)."""
    source = listener.allowed.namespaces_from
    if source == "All":
        return True
    if source == "Same":
        return route_namespace == gateway_namespace
    if source == "Selector":
        return selector_matches(listener.allowed.selector, namespace_labels.get(route_namespace) or {})
    return False


def selector_matches(selector, labels):
    """A metav1.LabelSelector against a label dict (an empty selector matches everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True
