"""Whose is this socket? The one module that answers it; every other module asks.

A socket is this cluster's, and a given Service's, only if the socket itself
says so. The API keeps no owner field, so the socket's name is the claim:
`mysocketd/<cluster>/<namespace>/<service>`, where <cluster> is an identity no
other cluster shares without someone configuring it (the UID of the
`kube-system` namespace, or a readable `--cluster-name`). An id written on a
Service is a cache that saves a lookup, never proof: a Service can be copied
into another namespace, restored into another cluster, or edited by anyone
who can write it. So a recorded id is followed only to a socket whose name
claims that very Service.

Two kinds of older sockets are recognised, each narrowly:

- the previous release's `k8s/<cluster-name>/<namespace>/<service>`. Their
  <cluster-name> was "default" unless configured, so the name alone cannot
  tell two such clusters apart. They are *inherited* instead: the first time
  this release leads in a cluster, it writes down (in a ConfigMap, see
  `lib/inheritance.py`) the ids of the old sockets that Services of this
  cluster recorded and whose names claim those same Services. Only those ids
  are ever treated as this cluster's; a Service restored later with an old id
  finds nothing to inherit.
- the original controller's `k8s <namespace>.<service>`, which names no
  cluster at all: adopted only with `--adopt-original-sockets`, for the one
  cluster that migrates from it.

Deleting follows the same rule: only a socket owned by this cluster, and only
for a Service that is provably gone or opted out.

A Gateway's or an Ingress's socket (the route table of lib/routetable.py) is
`mysocketd/<cluster>/gateway/<namespace>/<name>` (or `.../ingress/...`, and a
Gateway's TCP listener `.../gateway-tcp/<namespace>/<gateway>:<listener>`):
five parts, so it is never taken for a Service's, and `route_owner` says whose.

A pool's socket (`mysocketd-pool/<pool>`, `mysocket.io/pool`) is shared by the
clusters of one account that serve the same name; it is never "this cluster's"
here. Each member has its own tunnels on it, tagged with their owner, and a
member that leaves deletes the socket only through the edge's sparing delete
(gone only if no tunnel of another owner is left).
"""

import dataclasses

PREFIX = "mysocketd"
POOL_PREFIX = "mysocketd-pool"      # mysocketd-pool/<pool>: one socket per account and pool, shared
PREVIOUS_PREFIX = "k8s"            # the previous release: k8s/<cluster-name>/<ns>/<name>


@dataclasses.dataclass(frozen=True)
class Owner:
    """The Service a socket belongs to, and what makes it so ("name", "inherited" or "original")."""

    namespace: str
    name: str
    how: str

    @property
    def key(self):
        return self.namespace, self.name


def socket_name(cluster, namespace, name):
    return f"{PREFIX}/{cluster}/{namespace}/{name}"


ROUTE_KINDS = ("gateway", "ingress", "gateway-tcp")


def route_socket_name(cluster, kind, namespace, name):
    """The socket of a Gateway or an Ingress (`kind`), with its route table, or of a Gateway's TCP listener."""
    if kind not in ROUTE_KINDS:
        raise ValueError(f"not a kind with a route table: {kind!r}")
    return f"{PREFIX}/{cluster}/{kind}/{namespace}/{name}"


def pool_socket_name(pool):
    """A pool's socket is nobody's alone: clusters join it (a tunnel each) and leave it (the last one
    deletes it, through the edge's sparing delete), so its name carries no cluster."""
    return f"{POOL_PREFIX}/{pool}"


def pool_of(socket):
    """The pool a socket serves, or "" for any other socket."""
    parts = (socket.get("name") or "").split("/")
    return parts[1] if len(parts) == 2 and parts[0] == POOL_PREFIX and parts[1] else ""


def original_socket_name(namespace, name):
    """The name the original 194-line controller used."""
    return f"k8s {namespace}.{name}"


def previous_release_key(socket_name_):
    """(namespace, name) claimed by a previous-release name `k8s/<any cluster>/<ns>/<name>`, else None."""
    parts = socket_name_.split("/")
    if len(parts) == 4 and parts[0] == PREVIOUS_PREFIX and all(parts[1:]):
        return parts[2], parts[3]
    return None


def original_key(socket_name_):
    """(namespace, name) claimed by an original name `k8s <ns>.<name>`, else None."""
    if socket_name_.startswith("k8s ") and "." in socket_name_:
        namespace, _, service = socket_name_[len("k8s "):].partition(".")
        if namespace and service:
            return namespace, service
    return None


def claim_of(socket):
    """What a socket's name could claim, before anyone checks that it may: (namespace, service) for a
    Service's socket of any cluster or release, the name itself for a pool's, else None. For indexing
    only; `Ownership` decides."""
    name = socket.get("name") or ""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] in (PREFIX, PREVIOUS_PREFIX):
        return parts[2], parts[3]
    return original_key(name) or (name if pool_of(socket) else None)


class Ownership:
    def __init__(self, cluster, *, inherited=None, adopt_original=False):
        if not cluster or "/" in cluster:
            raise ValueError(f"a cluster identity must be non-empty and have no '/': {cluster!r}")
        self.cluster = cluster
        self.inherited = dict(inherited or {})   # socket_id -> (namespace, name), from the inventory
        self.adopt_original = adopt_original

    def name_for(self, namespace, name):
        return socket_name(self.cluster, namespace, name)

    def owner(self, socket):
        """The Owner of a socket if it is this cluster's, else None."""
        name = socket.get("name") or ""
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == PREFIX and parts[1] == self.cluster and parts[2] and parts[3]:
            return Owner(parts[2], parts[3], "name")
        claimed = self.inherited.get(socket.get("socket_id"))
        if claimed is not None and previous_release_key(name) == tuple(claimed):
            return Owner(claimed[0], claimed[1], "inherited")
        original = original_key(name) if self.adopt_original else None
        if original is not None:
            return Owner(original[0], original[1], "original")
        return None

    def route_owner(self, socket):
        """(kind, namespace, name) of the Gateway or Ingress whose socket this is, if it is this cluster's."""
        parts = (socket.get("name") or "").split("/")
        if len(parts) == 5 and parts[0] == PREFIX and parts[1] == self.cluster and parts[2] in ROUTE_KINDS \
                and parts[3] and parts[4]:
            return parts[2], parts[3], parts[4]
        return None

    def is_for(self, socket, key):
        """True only if the socket is this cluster's and belongs to the Service `key` (namespace, name)."""
        owner = self.owner(socket)
        return owner is not None and owner.key == tuple(key)
