"""What the route controller reads and writes in Kubernetes: Gateway API objects, Ingresses, statuses.

Kept beside lib/kube.py (whose Rest does the calls) so that the Service path is untouched: the
kinds the route controller watches (cluster-wide: GatewayClasses and IngressClasses are cluster
objects, and a Gateway takes routes from any namespace it allows), the status writes (a merge patch
of `status` alone, on the status subresource), and a Secret read that tells "does not exist" from
"mysocketd may not read it".
"""

from lib.apierrors import Forbidden, Invalid, NotFound
from lib.kube import FIELD_MANAGER, MERGE

GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"
NETWORKING = "/apis/networking.k8s.io/v1"

GATEWAY_CLASSES = (GATEWAY_API, "gatewayclasses")
GATEWAYS = (GATEWAY_API, "gateways")
HTTP_ROUTES = (GATEWAY_API, "httproutes")
TLS_ROUTES = (GATEWAY_API, "tlsroutes")
TCP_ROUTES = (GATEWAY_API, "tcproutes")         # v1 in the pinned release's CRD (its v1alpha2 is not served)
GRPC_ROUTES = (GATEWAY_API, "grpcroutes")
REFERENCE_GRANTS = (GATEWAY_API, "referencegrants")
INGRESSES = (NETWORKING, "ingresses")
INGRESS_CLASSES = (NETWORKING, "ingressclasses")
NAMESPACES = ("/api/v1", "namespaces")

KINDS = {"GatewayClass": GATEWAY_CLASSES, "Gateway": GATEWAYS, "HTTPRoute": HTTP_ROUTES, "TLSRoute": TLS_ROUTES,
         "TCPRoute": TCP_ROUTES, "GRPCRoute": GRPC_ROUTES, "ReferenceGrant": REFERENCE_GRANTS, "Ingress": INGRESSES,
         "IngressClass": INGRESS_CLASSES, "Namespace": NAMESPACES}
CLUSTER_SCOPED = (GATEWAY_CLASSES, INGRESS_CLASSES, NAMESPACES)

UNREADABLE = "unreadable"


def object_path(kind, obj):
    prefix, plural = kind
    meta = obj["metadata"]
    if kind in CLUSTER_SCOPED:
        return f"{prefix}/{plural}/{meta['name']}"
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def write_status(rest, kind, obj, status):
    """Replace the object's status with `status` (a merge patch of the status subresource)."""
    body = {"metadata": {"uid": obj["metadata"].get("uid")}, "status": status}
    try:
        return rest.json("PATCH", object_path(kind, obj) + "/status", body=body, content_type=MERGE,
                         query={"fieldManager": FIELD_MANAGER})
    except (NotFound, Invalid):         # deleted meanwhile, or deleted and made again (another uid)
        return None


def secret(rest, namespace, name):
    """The Secret as the API serves it, None when it does not exist, UNREADABLE when mysocketd may not read it."""
    try:
        return rest.json("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except NotFound:
        return None
    except Forbidden:
        return UNREADABLE
