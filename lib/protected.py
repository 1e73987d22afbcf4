"""The credentials of a protected socket, from a Secret that opted in.

The Secret must opt in (label mysocket.io/protected-secret: "true", set by
whoever may write Secrets): otherwise anyone who may annotate a Service could
have any Secret of its namespace with username/password keys (a database's,
say) sent to the edge, whose 401 would then answer guesses about it. And
mysocketd may read Secrets only where it was granted to
(yaml/optional/protected-secret-rbac.yaml), so a 403 is the user's to fix,
said as such. Unusable means the Service is not exposed: never unprotected.

The Secret's uid/resourceVersion travels along, so a rotated password is
noticed (and given to the edge in place) without keeping the password itself
anywhere but in memory.
"""

from lib.apierrors import Forbidden
from lib.services import PROTECTED_SECRET


class Unusable(Exception):
    """The Secret cannot be used; the message says why and what to do."""


def credentials(remote, kube, svc, name):
    """(username, password, version) of the Secret `name` in the Service's namespace, or Unusable."""
    ns = svc["metadata"]["namespace"]
    try:
        secret = remote.call(f"secret {name}", kube.secret, ns, name)
    except Forbidden:
        raise Unusable(_say(name, ns, "cannot be read by mysocketd: grant it `get` on Secrets in this namespace "
                                      "(yaml/optional/protected-secret-rbac.yaml)")) from None
    if secret is None:
        raise Unusable(_say(name, ns, "not found"))
    if (secret["labels"].get(PROTECTED_SECRET) or "").lower() != "true":
        raise Unusable(_say(name, ns, f'does not opt in: label it {PROTECTED_SECRET}="true" to let mysocketd use it'))
    data = secret.get("data") or {}
    if not (data.get("username") and data.get("password")):
        raise Unusable(_say(name, ns, "needs the keys username and password"))
    return data["username"], data["password"], secret["version"]


def _say(name, namespace, problem):
    return f"{PROTECTED_SECRET}: Secret {name!r} in namespace {namespace} {problem}"
