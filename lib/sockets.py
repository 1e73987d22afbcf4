"""The account's sockets as this controller sees them, and how one is found for a Service.

One `GET /connect` lists every socket with its tunnels. The controller keeps
that answer as a snapshot, updates it with its own creates and deletes, and
fetches it again at each resync or when a tunnel keeps failing. So a restart
adopts 300 Services with one call instead of 300, and the periodic clean-up
is the same call.

A Service's socket is found, in order: by the id recorded on the Service; by
this cluster's name for it; by the original controller's `k8s <ns>.<name>`
(so a migration keeps the DNS name). Only when all three miss is one created.
That order, with one reconcile at a time, is what makes "never duplicate"
hold across restarts and crashes: a socket created just before a crash is
found by name afterwards.
"""

import contextlib
import logging

from lib import mysocket, services

log = logging.getLogger(__name__)


def socket_fields(exposure, name, protected=None):
    """The body of POST /connect for an Exposure; `protected` is (username, password) or None."""
    username, password = protected or ("", "")
    return {
        "name": name,
        "socket_type": exposure.socket_type,
        "protected_socket": bool(protected),
        "protected_username": username,
        "protected_password": password,
        "cloud_authentication_enabled": bool(exposure.cloud_auth_emails or exposure.cloud_auth_domains),
        "cloud_authentication_email_allowed_addressses": list(exposure.cloud_auth_emails),
        "cloud_authentication_email_allowed_domains": list(exposure.cloud_auth_domains),
    }


def differences(socket, fields):
    """Names of the options an existing socket has otherwise than wanted (the API cannot update them)."""
    checked = ("socket_type", "protected_socket", "protected_username", "cloud_authentication_enabled")
    diff = [k for k in checked if (socket.get(k) or "") != (fields[k] or "")]
    for k in ("cloud_authentication_email_allowed_addressses", "cloud_authentication_email_allowed_domains"):
        if sorted(socket.get(k) or []) != sorted(fields[k]):
            diff.append(k)
    return diff


class Sockets:
    def __init__(self, api, cluster):
        self.api = api
        self.cluster = cluster
        self._by_id = None

    def invalidate(self):
        self._by_id = None

    def snapshot(self):
        if self._by_id is None:
            self._by_id = {s["socket_id"]: s for s in self.api.sockets() or []}
        return self._by_id

    def find(self, namespace, name, recorded_id=""):
        """(socket, how) for a Service, or (None, None); how is "id", "name" or "legacy name"."""
        sockets = self.snapshot()
        if recorded_id and recorded_id in sockets:
            return sockets[recorded_id], "id"
        for how, wanted in (("name", services.socket_name(self.cluster, namespace, name)),
                            ("legacy name", services.legacy_socket_name(namespace, name))):
            matches = sorted((s for s in sockets.values() if s.get("name") == wanted),
                             key=lambda s: s["socket_id"])
            if matches:
                return matches[0], how
        return None, None

    def create(self, fields):
        with self._in_doubt():
            socket = self.api.connect(fields)
        self.snapshot()[socket["socket_id"]] = socket
        return socket

    def add_tunnel(self, socket):
        with self._in_doubt():
            tunnel = self.api.create_tunnel(socket["socket_id"])
        socket.setdefault("tunnels", []).append(tunnel)
        return tunnel

    @contextlib.contextmanager
    def _in_doubt(self):
        """A create that timed out or failed may still have happened: list again before the next try."""
        try:
            yield
        except mysocket.ApiError:
            self.invalidate()
            raise

    def delete(self, socket_id):
        self.api.delete_socket(socket_id)
        if self._by_id is not None:
            self._by_id.pop(socket_id, None)

    def ours(self):
        """(socket, namespace, name) for every socket named as this cluster's."""
        for socket in list(self.snapshot().values()):
            owner = services.parse_socket_name(self.cluster, socket.get("name") or "")
            if owner:
                yield socket, owner[0], owner[1]
