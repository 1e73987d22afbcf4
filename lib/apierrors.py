"""The apiserver's errors, mapped once to this project's own classes.

As in kopf's `_cogs/clients/errors.py`: every call to the Kubernetes API goes
through lib/kube.py's `Rest`, which raises only these. No other module imports
the client library's exceptions or compares status codes: a caller asks "was
it not found?" (`except NotFound`), "did someone else write first?"
(`except Conflict`), "was nobody there?" (`except Unreachable`), and a log line
says `str(error)`, which is short and never carries a body or a token.

This is the one module that imports `kubernetes.client.exceptions` and
`urllib3.exceptions` (tests/unit/test_lint.py keeps it so).
"""

import contextlib
import json

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ReadTimeoutError


class KubeError(Exception):
    """Any failed call to the apiserver: an answer that is not 2xx, or no answer at all."""

    def __init__(self, reason="", *, status=None, body=None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body

    def __str__(self):
        return f"Kubernetes API: HTTP {self.status} {self.reason}".rstrip()


class Forbidden(KubeError):
    """401 or 403: this ServiceAccount may not do that."""


class NotFound(KubeError):
    """404."""


class Conflict(KubeError):
    """409: written by someone else since it was read (or it exists already)."""


class Gone(KubeError):
    """410: a watch's resourceVersion is too old; list again."""


class Invalid(KubeError):
    """422: the apiserver refused the object as written."""


class Unreachable(KubeError):
    """No answer: refused, reset, timed out, TLS failed."""

    def __str__(self):
        return f"Kubernetes API unreachable: {self.reason}"


class Silent(Unreachable):
    """A stream said nothing for its read timeout (routine for a quiet watch)."""


class NoNamespace(NotFound):
    """A create in a namespace that does not exist: the message names it and the flag that chose it."""

    def __init__(self, namespace, flag):
        super().__init__(f"namespace {namespace} not found", status=404)
        self.namespace = namespace
        self.flag = flag

    def __str__(self):
        return (f"the namespace {self.namespace!r} does not exist: create it (kubectl create namespace "
                f"{self.namespace}), or set {self.flag} to the namespace mysocketd runs in")


def missing_namespace(error):
    """The namespace a 404 says does not exist (a create in it), or None for any other 404."""
    if not isinstance(error, NotFound):
        return None
    try:
        details = json.loads(error.body or "{}").get("details") or {}
    except (ValueError, AttributeError):
        return None
    return details.get("name") if details.get("kind") == "namespaces" else None


_BY_STATUS = {401: Forbidden, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}


def from_status(status, reason, body=None):
    """The error for an HTTP status (a watch's ERROR event carries one too)."""
    if not status:
        return Unreachable(reason or "no answer")
    return _BY_STATUS.get(status, KubeError)(reason or "", status=status, body=body)


@contextlib.contextmanager
def mapped():
    """Raise this module's errors for whatever the client library or urllib3 raised inside."""
    try:
        yield
    except KubeError:
        raise
    except ApiException as e:
        raise from_status(e.status, e.reason, e.body) from None
    except ReadTimeoutError as e:
        raise Silent(e.__class__.__name__) from None
    except (HTTPError, OSError) as e:
        raise Unreachable(e.__class__.__name__) from None


def response_error(resp):
    """The error for a urllib3 response that is not 2xx (its body already read)."""
    body = resp.data.decode("utf-8", "replace") if resp.data else None
    return from_status(resp.status, resp.reason, body)
