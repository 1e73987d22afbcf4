"""This cluster's identity: what makes its socket names its own.

Two clusters on one Mysocket account must never claim each other's sockets,
and nobody should have to configure anything for that to hold. The UID of the
`kube-system` namespace is made by the apiserver when the cluster is created,
never changes, and no other cluster has it; reading it needs only `get` on
that one namespace. `--cluster-name` is a readable override for whoever wants
names like `mysocketd/prod-eu/...`, and then keeping it unique is theirs.

An apiserver that cannot be reached yet is waited for (the controller cannot
name anything before it knows who it is); a refusal (RBAC) is a configuration
mistake and is said in one line.
"""

import logging

from lib import kube
from lib.apierrors import Forbidden

log = logging.getLogger(__name__)


class NoIdentity(Exception):
    """The identity cannot be read, and waiting will not help."""


def resolve(k8s, override, stopping, *, cap=30.0):
    """The cluster identity: the override, else kube-system's UID; None if stopped while waiting."""
    if override:
        return override
    delay = 1.0
    while not stopping.is_set():
        try:
            return k8s.namespace_uid("kube-system")
        except Forbidden as e:
            raise NoIdentity(f"cannot read the UID of namespace kube-system, this cluster's identity "
                             f"(HTTP {e.status}): grant `get` on namespaces/kube-system as yaml/mysocketd.yaml "
                             "does, or set --cluster-name to a name no other cluster on the account uses") from None
        except kube.ERRORS as e:
            problem = kube.describe_error(e)
        log.warning("cannot read this cluster's identity yet (%s); trying again in %.0fs", problem, delay)
        stopping.wait(delay)
        delay = min(cap, delay * 2)
    return None
