"""The leader's periodic look at everything: what vanished, what is left over, who serves.

Run every --resync-seconds whatever waits in the queue, and only by a
confirmed leader whose Service watch is live (a stale cache must never decide
that something is gone). One list of the account's sockets (and one of the
replicas' Leases) serves every step:

- a Service whose socket or tunnel vanished, or whose tunnel the edge moved to
  another node, is queued again (it is recreated, or follows the move); so is
  one with fewer tunnels than --edge-connections (the edge may have gained nodes);
- a socket of this cluster whose Service is provably gone or opted out is
  deleted (lib/ownership.py says which are this cluster's);
- a tunnel of this cluster whose replica is gone for good (lib/replicas.py),
  or whose Service no longer uses that socket, is deleted; so is a tunnel of
  unknown owner on one of this cluster's own sockets that nobody forwards (the
  previous release made one such per socket);
- a pool that no Service here serves any more is left: this cluster's
  tunnels go, and the socket too if no other cluster's tunnel is on it;
- protected Services look at their Secret again (a rotated password);
- each exposed Service says who serves it (`mysocket.io/served-by`): how many
  tunnels the edge has connected, from which replicas of this cluster, and how
  many from other clusters of its pool. The sweep only works the line out and
  queues the Services whose annotation says otherwise; each one's own
  reconcile writes it, with its other annotations in the same patch. Written
  here, the sweep would end at the first write still on its way and start
  over: with 1,000 Services that was one write and one whole sweep per turn
  of the loop, which then had no time left for anything else.
"""

import logging

from lib import services
from lib.ownership import pool_of, pool_socket_name
from lib.remote import Pending
from lib.replicas import TunnelOwner
from lib.services import SERVED_BY, SOCKET_ID

log = logging.getLogger(__name__)


class Sweep:
    def __init__(self, controller, liveness=None):
        self.c = controller
        self.liveness = liveness        # lib.replicas.Liveness; None: a single replica, no one else's tunnels
        self._listing = False           # a fresh list for this sweep is on its way

    def run(self):
        c = self.c
        if not self._listing:
            c.sockets.invalidate()      # a list begun now; a run cut short by Pending waits for that one
            self._listing = True
        try:
            snapshot = c.sockets.snapshot()
            if self.liveness is not None:
                # After the sockets: a tunnel seen there has its Lease by now. Listed off the loop
                # (lib/remote.py); Pending ends this run, and the next one takes both lists on their way
                # (not a new list of the sockets: that would cost every sweep two lists, and a sweep
                # that is never done would keep finding creates still on their way by name).
                self.liveness.update(c.remote.call("list replica leases", self.liveness.list))
        except Pending:
            raise                       # the next run takes the lists on their way
        except BaseException:
            self._listing = False       # failed: the next run asks for a new one
            raise
        self._listing = False
        self._requeue_vanished(snapshot)
        for socket, owner in c.sockets.owned():
            if self._leftover(socket, owner):
                self._delete_socket(socket, owner)
        for socket in [s for s in snapshot.values() if c.ownership.owner(s) or pool_of(s)]:
            for tunnel in list(socket.get("tunnels") or []):
                why = self._stray(socket, tunnel)
                if why:
                    log.info("deleting tunnel %s of socket %s: %s", tunnel["tunnel_id"], socket.get("dnsname"), why)
                    if not c.dry_run:
                        c.sockets.delete_tunnel(socket, tunnel, fenced=True)
        for socket, pool in list(c.sockets.pools()):
            c.pools.leave_if_unused(socket, pool)
        for key, record in list(c.records.items()):
            if record.exposure.protected_secret:
                c.recheck.add(key)
                c.queue.add(key)
            self._note_who_serves(key, record, snapshot.get(record.socket_id))

    # -- each step -------------------------------------------------------------------

    def _requeue_vanished(self, snapshot):
        for key, record in list(self.c.records.items()):
            socket = snapshot.get(record.socket_id)
            placed = {t["tunnel_id"]: str(t.get("tunnel_server") or "") for t in (socket or {}).get("tunnels") or []}
            if socket is None or any(placed.get(t.tunnel_id) != t.server for t in record.tunnels):
                log.warning("socket or tunnel disappeared from the API, or a tunnel moved to another node; "
                            "looking again", extra=_fields(key))
                del self.c.records[key]
                self.c.queue.add(key)
            elif record.socket_id and len(record.tunnels) < min(self.c.serving.connections,
                                                                self.c.sockets.edge_nodes()):
                del self.c.records[key]     # fewer than it wants and the edge can give: asked again
                self.c.queue.add(key)

    def _in_scope(self, namespace):
        scope = self.c.kube.namespace
        return not scope or namespace == scope

    def _leftover(self, socket, owner):
        """Provably unwanted: its Service is gone, opted out, or uses another socket of this cluster."""
        if not self._in_scope(owner.namespace):
            return False                        # another controller's namespace
        svc = self.c.watcher.get(owner.key)
        if svc is None:
            return True
        if services.enabled_is_invalid(svc):
            return False                        # in doubt until the user says "true" or "false"
        if owner.how == "original":
            return False                        # the original controller's: only when no such Service exists
        if not services.opted_in(svc):
            return not services.retained(svc)
        record = self.c.records.get(owner.key)
        return record is not None and bool(record.socket_id) and record.socket_id != socket["socket_id"]

    def _delete_socket(self, socket, owner):
        log.info("%s leftover socket %s (%s)", "dry-run: would delete" if self.c.dry_run else "deleting",
                 socket.get("name"), socket.get("dnsname"), extra=_fields(owner.key, socket["socket_id"]))
        if not self.c.dry_run:
            self.c.sockets.delete(socket)

    def _stray(self, socket, tunnel):
        """Why a tunnel should go (a replica gone, a Service elsewhere, an idle unowned one), or ""."""
        c = self.c
        owner = TunnelOwner.parse(tunnel.get("owner"))
        if owner is None:
            if tunnel.get("owner") or pool_of(socket) or tunnel.get("connected") is not False:
                return ""                       # someone else's tag, a pool's, or forwarded: not ours to judge
            return "no owner and nobody forwards it (made by the previous release)"
        if owner.cluster != c.ownership.cluster or not self._in_scope(owner.namespace):
            return ""
        if self.liveness is not None and self.liveness.gone(owner.cluster, owner.replica):
            return f"replica {owner.replica} is gone"
        if not self._uses(owner.key, socket):
            return f"Service {owner.namespace}/{owner.name} does not use this socket"
        return ""

    def _uses(self, key, socket):
        svc = self.c.watcher.get(key)
        if svc is None or svc["metadata"].get("deletionTimestamp") or not services.opted_in(svc):
            return False
        annotations = svc["metadata"].get("annotations") or {}
        pool = (annotations.get(services.POOL) or "").strip()
        if pool:
            return socket.get("name") == pool_socket_name(pool)
        return annotations.get(SOCKET_ID) == socket["socket_id"] or self.c.ownership.is_for(socket, key)

    def _note_who_serves(self, key, record, socket):
        """Keep the line on the record; the Service's reconcile writes it (lib/controller._write_back)."""
        svc = self.c.watcher.get(key)
        if svc is None or socket is None:
            return
        record.served_by = served_by(socket, self.c.ownership.cluster)
        if (svc["metadata"].get("annotations") or {}).get(SERVED_BY) != record.served_by:
            self.c.queue.add(key)


def served_by(socket, cluster):
    """One line for `kubectl describe service`: the tunnels the edge has connected, whose, and on which
    edge nodes (the edge's `tunnel_server` of each: the host its client connects to).

    Short and bounded whatever the pool's size: counts, this cluster's replicas, and at most a few names
    of the rest; it changes only when the serving does, so writing it costs nothing in between."""
    connected = [t for t in socket.get("tunnels") or [] if t.get("connected")]
    if not connected:
        return "no tunnel connected"
    owners = [TunnelOwner.parse(t.get("owner")) for t in connected]
    ours = sorted(o.replica for o in owners if o is not None and o.cluster == cluster)
    others = len(connected) - len(ours)
    parts = [f"this cluster: {len(ours)} ({', '.join(ours)})" if ours else "this cluster: 0"]
    if pool_of(socket):
        clusters = sorted({o.cluster for o in owners if o is not None and o.cluster != cluster})
        parts.append(f"other clusters: {others}" + (f" ({_some(clusters)})" if clusters else ""))
    nodes = sorted({str(t["tunnel_server"]) for t in connected if t.get("tunnel_server")})
    if nodes:
        parts.append(f"edge node{'s' if len(nodes) != 1 else ''}: {_some(nodes)}")
    return f"{len(connected)} tunnel{'s' if len(connected) != 1 else ''} connected; " + "; ".join(parts)


def _some(names, most=3):
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _fields(key, socket_id=None):
    fields = {"namespace": key[0], "service": key[1]}
    if socket_id:
        fields["socket_id"] = socket_id
    return fields
