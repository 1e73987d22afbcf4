"""ReferenceGrant: may an object in one namespace refer to one in another?

The Gateway API's answer to confused deputies: an HTTPRoute in namespace A
may send traffic to a Service in namespace B, and a Gateway in A may use a
certificate Secret in B, only if a ReferenceGrant *in B* says that kind in A
may. References within one namespace need no grant. A grant names the
referring side by group, kind and namespace, and the referred side by group,
kind and optionally one name (none: every object of that kind in B).

Pure: the grants are the objects as the API serves them; the controller
lists them and asks here, so "is this reference permitted" has one answer.
"""

import dataclasses

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""


@dataclasses.dataclass(frozen=True)
class Ref:
    """One side of a reference: (group, kind, namespace, name); name "" on the `from` side."""

    group: str
    kind: str
    namespace: str
    name: str = ""


def permitted(grants, source: Ref, target: Ref) -> bool:
    """Whether `source` may refer to `target` under `grants` (a list of ReferenceGrant objects)."""
    if source.namespace == target.namespace:
        return True
    for grant in grants:
        if (grant.get("metadata") or {}).get("namespace") != target.namespace:
            continue
        spec = grant.get("spec") or {}
        if not any(_from_matches(f, source) for f in spec.get("from") or []):
            continue
        if any(_to_matches(t, target) for t in spec.get("to") or []):
            return True
    return False


def _from_matches(entry, source):
    return ((entry.get("group") or "") == source.group and entry.get("kind") == source.kind
            and entry.get("namespace") == source.namespace)


def _to_matches(entry, target):
    name = entry.get("name")
    return ((entry.get("group") or "") == target.group and entry.get("kind") == target.kind
            and (not name or name == target.name))
