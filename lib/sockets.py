"""The account's sockets as this controller sees them, and how one is found for a Service.

One `GET /connect` lists every socket with its tunnels. The controller keeps
that answer as a snapshot, updates it with its own creates and deletes, and
fetches it again at each resync, when a tunnel keeps failing, and whenever it
becomes the leader. So a restart adopts 300 Services with one call instead of
300, and the periodic clean-up is the same call.

A Service's socket is found, in order: by the id recorded on the Service, if
the socket there is this Service's (`lib.ownership` decides); else by its
owned name. Only when both miss is one created. That order, with one reconcile
at a time, is what makes "never duplicate" hold across restarts and crashes: a
socket created just before a crash is found by name afterwards. A recorded id
that leads to someone else's socket is reported back (`Found.foreign`) and the
socket is never touched.
"""

import contextlib
import dataclasses
import logging
import threading

from lib import mysocket
from lib.ownership import claim_of, pool_of, pool_socket_name
from lib.remote import Direct, Pending

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
        "upstream_protocol": exposure.upstream_protocol,
    }


def protocol_differs(socket, fields):
    """Whether the edge says the socket's app speaks otherwise than wanted. An edge that does not
    know `upstream_protocol` (it is absent from its answers) is never asked to change it."""
    return socket.get("upstream_protocol") is not None and socket["upstream_protocol"] != fields["upstream_protocol"]


CLOUD_AUTH_LISTS = ("cloud_authentication_email_allowed_addressses", "cloud_authentication_email_allowed_domains")


def differences(socket, fields):
    """Names of the options an existing socket has otherwise than wanted that the API cannot update
    (the cloud-auth lists it can: lists_differ)."""
    checked = ("socket_type", "protected_socket", "protected_username", "cloud_authentication_enabled")
    return [k for k in checked if (socket.get(k) or "") != (fields[k] or "")]


def lists_differ(socket, fields):
    """Names of the cloud-auth lists a socket with cloud authentication has otherwise than wanted."""
    if not fields["cloud_authentication_enabled"]:
        return []
    return [k for k in CLOUD_AUTH_LISTS if sorted(socket.get(k) or []) != sorted(fields[k])]


@dataclasses.dataclass
class Found:
    socket: dict = None         # this Service's socket, or None
    how: str = ""               # "id", or the Owner's how ("name", "inherited", "original")
    foreign: dict = None        # the socket a recorded id pointed at, when it is not this Service's


class Sockets:
    def __init__(self, api, ownership, fence=None, remote=None):
        self.api = api
        self.ownership = ownership
        self.fence = fence          # lib.leader.Fence: every remote change checks it first
        self.remote = remote or Direct()    # lib.remote: a slow call holds up only its own Service
        self._by_id = None
        self._by_claim = None       # what a name claims -> [socket]: a Service's lookup reads a few, not all
        self._nodes = None
        self._epoch = 0
        # Sockets this controller made, kept until a list begun after each was made has come back and
        # its creation was said: a list on its way meanwhile may not show it (it would be made twice),
        # and one found by name before its create's answer was taken is no adoption (creation_said).
        self._made = {}             # socket_id -> [socket, how many lists had begun when it was made, said]
        self._lists_begun = 0
        self._count_lock = threading.Lock()     # lists begin on the remote workers

    def invalidate(self):
        """The next look lists again, with a list begun after this moment."""
        self._by_id = self._by_claim = None
        self._nodes = None
        self._epoch += 1
        self.remote.drop_shared()

    def edge_nodes(self):
        """How many nodes the edge has live (lib/mysocket.py), asked again after each invalidate()."""
        if self._nodes is None:
            self._nodes = self.remote.shared(f"edge nodes #{self._epoch}", self.api.edge_nodes)
        return self._nodes

    def snapshot(self):
        """The account's sockets by id. One list serves every Service that needs it (lib/remote.py):
        a list held up by the API holds up only the Services that wait for it, never the loop."""
        if self._by_id is None:
            number, listed = self.remote.shared(f"list sockets #{self._epoch}", self._list)
            by_id = {s["socket_id"]: s for s in listed or []}
            for socket_id, (socket, begun, said) in list(self._made.items()):
                if number <= begun:
                    by_id.setdefault(socket_id, socket)
                elif said:
                    del self._made[socket_id]       # this list began after it was made: it says the truth
            self._by_id, self._by_claim = by_id, None
        return self._by_id

    def _claiming(self, claim):
        """The snapshot's sockets whose name claims `claim` (lib.ownership.claim_of), built once per
        snapshot: a burst of 1,000 Services then reads ~1 socket each instead of 1,000."""
        sockets = self.snapshot()
        if self._by_claim is None:
            self._by_claim = {}
            for socket in sockets.values():
                self._by_claim.setdefault(claim_of(socket), []).append(socket)
        return self._by_claim.get(claim, [])

    def keep(self, socket):
        """A socket this controller just made joins the snapshot (and its index, if built)."""
        if self._by_id is not None:
            self._drop(socket["socket_id"])
            self._by_id[socket["socket_id"]] = socket
            if self._by_claim is not None:
                self._by_claim.setdefault(claim_of(socket), []).append(socket)

    def _drop(self, socket_id):
        socket = self._by_id.pop(socket_id, None) if self._by_id is not None else None
        if socket is not None and self._by_claim is not None:
            claimed = self._by_claim.get(claim_of(socket), [])
            claimed[:] = [s for s in claimed if s["socket_id"] != socket_id]

    def _list(self):
        """(this list's number, the sockets): numbered as it begins, on the worker that sends it."""
        with self._count_lock:
            self._lists_begun += 1
            number = self._lists_begun
        return number, self.api.sockets()

    def creation_said(self, socket_id):
        """For a socket found by name: None if this controller did not make it; else whether its creation
        was said (SocketCreated), and from now on it is. A create's answer can come back after a list
        begun later already showed the socket: that is this controller's own socket, not an adoption."""
        with self._count_lock:
            entry = self._made.get(socket_id)
            if entry is None:
                return None
            said, entry[2] = entry[2], True
            return said

    def _made_by_edge(self, create, *args, **kwargs):
        """On the worker: the create, recorded the moment the edge answers (before the loop takes it)."""
        socket = create(*args, **kwargs)
        socket.setdefault("tunnels", [])
        with self._count_lock:
            self._made.setdefault(socket["socket_id"], [socket, self._lists_begun, False])
        return socket

    def cached(self, socket_id):
        """The socket from the snapshot already listed, or None (never lists: no remote call)."""
        return (self._by_id or {}).get(socket_id)

    def find(self, key, recorded_id="", pool=""):
        """This Service's socket (by recorded id if that is really its own, else by name).

        For a pool member, the pool's socket: the one named for the pool, whoever made it.
        """
        sockets = self.snapshot()
        found = Found()
        recorded = sockets.get(recorded_id) if recorded_id else None
        if pool:
            named = sorted((s for s in self._claiming(pool_socket_name(pool))
                            if s.get("name") == pool_socket_name(pool)), key=lambda s: s["socket_id"])
            if recorded is not None and recorded in named:
                return Found(recorded, "id")
            found.foreign = recorded if recorded is not None and recorded not in named else None
            if named:
                found.socket, found.how = named[0], "pool"
            return found
        if recorded is not None:
            if self.ownership.is_for(recorded, key):
                return Found(recorded, "id")
            found.foreign = recorded
        mine = sorted((s for s in self._claiming(tuple(key)) if self.ownership.is_for(s, key)),
                      key=lambda s: (_rank(self.ownership.owner(s).how), s["socket_id"]))
        if mine:
            found.socket, found.how = mine[0], self.ownership.owner(mine[0]).how
        return found

    def owned(self):
        """(socket, Owner) for every socket on the account that is this cluster's."""
        for socket in list(self.snapshot().values()):
            owner = self.ownership.owner(socket)
            if owner is not None:
                yield socket, owner

    def owned_routes(self):
        """(socket, (kind, namespace, name)) for every socket of this cluster's Gateways and Ingresses."""
        for socket in list(self.snapshot().values()):
            owner = self.ownership.route_owner(socket)
            if owner is not None:
                yield socket, owner

    def pools(self):
        """(socket, pool) for every pool socket on the account (shared: see lib/ownership.py)."""
        for socket in list(self.snapshot().values()):
            if pool_of(socket):
                yield socket, pool_of(socket)

    def create(self, fields, owner, pool=""):
        """A new socket with this replica's tunnel (tagged `owner`) in one call; the other replicas add
        theirs. For a pool, the edge's one socket per name (unique_name: two clusters joining at the
        same moment end with one socket), and this replica's tunnel is added like any other's."""
        self._check_fence()
        with self._in_doubt():
            if pool:
                fields = {**fields, "name": pool_socket_name(pool), "unique_name": True}
                socket = self.remote.call("create", self._made_by_edge, self.api.create_socket, fields,
                                          before_send=self._check_fence)
            else:
                socket = self.remote.call("create", self._made_by_edge, self.api.connect,
                                          {**fields, "tunnel_owner": owner}, before_send=self._check_fence)
        self.creation_said(socket["socket_id"])     # the caller says it now
        # Never list here: the create's outcome is taken, and a Pending now would lose the socket.
        self.keep(socket)
        return socket

    def add_tunnel(self, socket, owner, nth=0):
        """This replica's own tunnel on a socket (no leadership needed: it is this replica's); `nth`: how
        many it has already, so its second is another call than its first (lib/remote.py)."""
        with self._in_doubt():
            tunnel = self.remote.call(f"tunnel {socket['socket_id']}" + (f" #{nth}" if nth else ""),
                                      self.api.create_tunnel, socket["socket_id"], owner)
            tunnel["local_port"] = int(tunnel["local_port"])
        socket.setdefault("tunnels", []).append(tunnel)
        return tunnel

    def delete_tunnel(self, socket, tunnel, fenced=False):
        """Delete a tunnel this cluster owns (its tag says so); refuses anything else. `fenced`: the
        leader's delete of another replica's tunnel (the sweep, leaving a pool), sent only while leading."""
        if not (tunnel.get("owner") or "").startswith(self.ownership.cluster + "/") and \
                self.ownership.owner(socket) is None:
            raise NotOurs(f"refusing to delete tunnel {tunnel.get('tunnel_id')}: neither it nor its socket is "
                          "this cluster's")
        if fenced:
            self._check_fence()
        self.remote.call(f"delete tunnel {tunnel['tunnel_id']}", self.api.delete_tunnel, socket["socket_id"],
                         tunnel["tunnel_id"], before_send=self._check_fence if fenced else None)
        socket["tunnels"] = [t for t in socket.get("tunnels") or [] if t["tunnel_id"] != tunnel["tunnel_id"]]

    def update_protection(self, socket, fields):
        """New basic-auth credentials in place, so a rotated Secret keeps the name."""
        self._check_fence()
        body = {k: fields[k] for k in ("protected_socket", "protected_username", "protected_password")}
        updated = self.remote.call(f"protect {socket['socket_id']}", self.api.update_socket, socket["socket_id"],
                                   body, before_send=self._check_fence)
        socket.update({k: v for k, v in (updated or {}).items() if k != "tunnels"})

    def update_cloud_auth(self, socket, fields):
        """The allowed e-mail addresses and domains changed: the edge is told in place, the name stays."""
        self._check_fence()
        body = {k: fields[k] for k in CLOUD_AUTH_LISTS}
        updated = self.remote.call(f"cloud-auth {socket['socket_id']}", self.api.update_socket, socket["socket_id"],
                                   body, before_send=self._check_fence)
        socket.update({k: v for k, v in (updated or {}).items() if k != "tunnels"})

    def update_protocol(self, socket, fields):
        """The app's protocol (`upstream_protocol`) changed in place: the name stays."""
        self._check_fence()
        body = {"upstream_protocol": fields["upstream_protocol"]}
        updated = self.remote.call(f"protocol {socket['socket_id']}", self.api.update_socket, socket["socket_id"],
                                   body, before_send=self._check_fence)
        socket.update({k: v for k, v in (updated or {}).items() if k != "tunnels"})

    def update_hostnames(self, socket, names):
        """The socket's custom hostnames set (and the unproven ones checked again) in place."""
        self._check_fence()
        updated = self.remote.call(f"hostnames {socket['socket_id']}", self.api.put_hostnames, socket["socket_id"],
                                   names, before_send=self._check_fence)
        socket.update({k: v for k, v in (updated or {}).items() if k != "tunnels"})

    def leave_pool(self, socket, prefix):
        """Delete a pool's socket if every tunnel on it is tagged with `prefix` (this cluster's, or this
        namespace's of it); False when others still serve it."""
        self._check_fence()
        try:
            self.remote.call(f"leave {socket['socket_id']}", self.api.delete_socket, socket["socket_id"],
                             prefix, before_send=self._check_fence)
        except mysocket.Conflict:
            return False
        self._made.pop(socket["socket_id"], None)
        self._drop(socket["socket_id"])
        return True

    def delete(self, socket):
        """Delete one of this cluster's sockets (a Service's, a Gateway's or an Ingress's); refuses anything
        else, whatever the caller thinks."""
        if self.ownership.owner(socket) is None and self.ownership.route_owner(socket) is None:
            raise NotOurs(f"refusing to delete socket {socket.get('socket_id')} ({socket.get('name')!r}): "
                          "it is not this cluster's")
        self._check_fence()
        self.remote.call(f"delete {socket['socket_id']}", self.api.delete_socket, socket["socket_id"],
                         before_send=self._check_fence)
        self._made.pop(socket["socket_id"], None)
        self._drop(socket["socket_id"])

    def _check_fence(self):
        if self.fence is not None:
            self.fence.check()

    @contextlib.contextmanager
    def _in_doubt(self):
        """A create that timed out, failed or was answered oddly may still have happened: list again
        before the next try, so it is found by name instead of created twice."""
        try:
            yield
        except Pending:
            raise                   # still running: its outcome is kept, nothing is in doubt yet
        except Exception:
            self.invalidate()
            raise


class NotOurs(Exception):
    """A bug guard: something asked to delete a socket that ownership does not give to this cluster."""


def _rank(how):
    """Prefer the oldest public name a user may already know: inherited, then the original's, then ours."""
    return {"inherited": 0, "original": 1, "name": 2}.get(how, 3)
