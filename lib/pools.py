"""Pools: one public name that Services in several clusters serve together.

A Service with `mysocket.io/pool: <pool>` joins the account's one socket for
that pool (`mysocketd-pool/<pool>`, made with the edge's unique_name so two
clusters joining at once end with one socket) with its replicas' own tunnels.
Leaving must never take the name from the others: this cluster's tunnels for
the Service go, and the socket goes only through the edge's sparing delete,
which refuses while any tunnel of another owner (another cluster, or a tunnel
of unknown owner) is on it. A namespace-scoped controller answers only for its
namespace's tunnels (the tag prefix `<cluster>/<namespace>/`).
"""

import logging

from lib import services

log = logging.getLogger(__name__)


class Pools:
    in_use_elsewhere = staticmethod(lambda: set())     # pools the route controller serves (set by wiring)

    def __init__(self, *, sockets, watcher, cluster, scope, event):
        self.sockets = sockets
        self.watcher = watcher
        self.cluster = cluster
        self.scope = scope              # the controller's namespace, or "" for all
        self.event = event              # (svc, kind, reason, message)

    def prefix(self):
        """The tag prefix of every tunnel this controller answers for."""
        return tunnel_prefix(self.cluster, self.scope)

    def member(self, key, pool):
        """Does the Service `key` serve this pool right now?"""
        svc = self.watcher.get(key)
        if svc is None or svc["metadata"].get("deletionTimestamp") or not services.opted_in(svc):
            return False
        return ((svc["metadata"].get("annotations") or {}).get(services.POOL) or "").strip() == pool

    def leave(self, key, svc, pool, recorded):
        """The Service stops serving the pool: its tunnels (every replica's) go; the socket too if it was
        the last member anywhere."""
        found = self.sockets.find(key, recorded, pool=pool)
        if found.socket is None:
            return
        socket = found.socket
        mine = f"{self.cluster}/{key[0]}/{key[1]}/"
        for tunnel in tunnels_of(socket, mine):
            self.sockets.delete_tunnel(socket, tunnel, fenced=True)
        if any(self.member(k, pool) for k in self.watcher.keys() if k != key):
            return                              # another Service here still serves the pool
        if self.sockets.leave_pool(socket, self.prefix()):
            self.event(svc, "Normal", "SocketDeleted", f"left pool {pool}, its last member: deleted socket "
                       f"{socket['socket_id']} ({socket.get('dnsname')})")
        else:
            self.event(svc, "Normal", "PoolLeft", f"left pool {pool}; other clusters still serve "
                       f"{socket.get('dnsname')}, so its socket stays")

    def leave_if_unused(self, socket, pool):
        """The sweep: a pool with tunnels of ours that no Service here serves any more is left."""
        if not tunnels_of(socket, self.prefix()) or any(self.member(k, pool) for k in self.watcher.keys()):
            return
        if pool in self.in_use_elsewhere():
            return                      # a Gateway or an Ingress of this cluster serves it
        log.info("leaving pool %s: no Service here serves it", pool)
        withdraw(self.sockets, socket, self.prefix())


def tunnel_prefix(cluster, scope=""):
    """The owner-tag prefix of every tunnel a controller of `cluster` (watching `scope`, or all) made."""
    return f"{cluster}/{scope}/" if scope else f"{cluster}/"


def tunnels_of(socket, prefix):
    return [t for t in socket.get("tunnels") or [] if (t.get("owner") or "").startswith(prefix)]


def withdraw(sockets, socket, prefix):
    """Take the tunnels tagged `prefix` off a pool's socket, then the socket too if no other member's
    tunnel is on it (the edge's sparing delete decides, atomically). True if the socket went."""
    for tunnel in tunnels_of(socket, prefix):
        sockets.delete_tunnel(socket, tunnel, fenced=True)
    return sockets.leave_pool(socket, prefix)
