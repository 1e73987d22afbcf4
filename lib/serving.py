"""This replica's own share of a public name: its tunnel on the Service's socket, and its ssh child.

Every replica serves every exposed Service at once (active-active), each
through a tunnel of its own, so the edge spreads visitors over all of them and
fails over within a request when one goes away: losing a pod costs no failed
request. A replica's tunnel carries its owner tag (`lib/replicas.TunnelOwner`:
cluster, namespace, Service, replica), which is how it finds its tunnel again
after a restart, and how the leader knows whose the others are. Making or
deleting its own tunnel needs no leadership; only the socket itself is the
leader's to create and delete.

A tunnel takes traffic only while its Service has a ready endpoint here: with
none (every pod failing its readiness probe, a Deployment scaled to 0), this
replica withdraws (stops its ssh child, keeps the tunnel) so that the edge
sends visitors to other clusters of a pool, or answers its own 502, instead of
forwarding them into nothing; it comes back when an endpoint does. A Service
without any EndpointSlice (no selector, or nothing maintains slices) is
served: unknown is not "none".
"""

import dataclasses
import logging

from lib import services
from lib.replicas import TunnelOwner
from lib.sshargs import TunnelSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Record:
    """What this replica serves for one Service: a cache of the remote truth, dropped when in doubt."""

    uid: str
    exposure: services.Exposure
    socket_id: str
    tunnel_id: str
    dnsname: str
    local_port: int
    server: str = ""                # the tunnel's tunnel_server (lib/sshargs.endpoint_of)
    withdrawn: bool = False         # no ready endpoint: the child is stopped, the tunnel kept


class Serving:
    def __init__(self, *, sockets, supervisor, cluster, replica, endpoints=None, lease=None):
        self.sockets = sockets
        self.supervisor = supervisor
        self.cluster = cluster
        self.replica = replica
        self.endpoints = endpoints      # lib.watcher.EndpointSliceWatcher, or None: always serve
        self.lease = lease              # lib.replicas.ReplicaLease: no tunnel before it was renewed once

    def owner(self, key):
        return TunnelOwner(self.cluster, key[0], key[1], self.replica)

    def own_tunnel(self, socket, key):
        tag = self.owner(key).tag
        return next((t for t in socket.get("tunnels") or [] if t.get("owner") == tag), None)

    def ready_to_make_tunnels(self):
        """The leader removes tunnels whose replica has no Lease: never make one before ours exists."""
        return self.lease is None or self.lease.renewed.is_set()

    def record(self, key, svc, exposure, socket):
        """This replica's tunnel on the socket (made now if it has none); None while it may not make one."""
        tunnel = self.own_tunnel(socket, key)
        if tunnel is None:
            if not self.ready_to_make_tunnels():
                return None
            tunnel = self.sockets.add_tunnel(socket, self.owner(key).tag)
            log.info("made this replica's tunnel (port %s)", tunnel["local_port"], extra=_fields(key))
        return Record(svc["metadata"]["uid"], exposure, socket["socket_id"], tunnel["tunnel_id"],
                      socket.get("dnsname", ""), int(tunnel["local_port"]),
                      str(tunnel.get("tunnel_server") or ""))

    def apply(self, key, record, user_name):
        """Run or withdraw the child as the Service's endpoints say; True when that changed `withdrawn`."""
        ready = self.endpoints.ready(key) if self.endpoints is not None else None
        withdrawn = ready == 0
        changed = withdrawn != record.withdrawn
        record.withdrawn = withdrawn
        if withdrawn:
            self.supervisor.remove(key)
        else:
            self.supervisor.ensure(key, TunnelSpec(record.local_port, record.exposure.cluster_ip,
                                                   record.exposure.port, user_name, record.server))
        return changed

    def stop(self, key, record=None, drop_tunnel=False):
        """Stop serving; with drop_tunnel, delete this replica's tunnel too (its socket stays: retained,
        or a pool others serve)."""
        self.supervisor.remove(key)
        if not (drop_tunnel and record):
            return
        socket = self.sockets.snapshot().get(record.socket_id)
        tunnel = self.own_tunnel(socket, key) if socket else None
        if tunnel is not None:
            self.sockets.delete_tunnel(socket, tunnel)
            log.info("deleted this replica's tunnel", extra=_fields(key))


def _fields(key):
    return {"namespace": key[0], "service": key[1]}
