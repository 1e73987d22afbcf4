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

On an edge of several nodes a replica holds `connections` tunnels per Service
(--edge-connections, 2 by default), each connected to the node the edge
placed it on (`tunnel_server`): the edge puts a socket's tunnels on distinct
nodes while it has free ones, so one replica alone already keeps the name on
two nodes, as cloudflared keeps connections to two data centres. It asks for
no more tunnels than the edge has live nodes (`GET /health`; an edge that does
not say counts as one), so a single-node edge sees one tunnel per replica as
before. Each tunnel is its own forward in the supervisor: the first under the
Service's key, the others under (namespace, name, i).
"""

import dataclasses
import logging

from lib import services
from lib.replicas import TunnelOwner
from lib.sshargs import TunnelSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Tunnel:
    """One of this replica's tunnels of a Service: where it forwards, and the node it is placed on."""

    tunnel_id: str
    local_port: int
    server: str = ""                # its tunnel_server (lib/sshargs.endpoint_of); "" = --ssh-host


def connection_key(key, i):
    """The supervisor's key of a Service's i-th connection: the Service's own for the first."""
    return key if i == 0 else (*key, i)


@dataclasses.dataclass
class Record:
    """What this replica serves for one Service: a cache of the remote truth, dropped when in doubt."""

    uid: str
    exposure: services.Exposure
    socket_id: str
    dnsname: str
    tunnels: tuple = ()             # Tunnel, one per connection, in the order the edge lists them
    withdrawn: bool = False         # no ready endpoint: the child is stopped, the tunnel kept
    served_by: str = None           # `mysocket.io/served-by` as the last sweep saw it (lib/sweep.py), or None


class Serving:
    def __init__(self, *, sockets, supervisor, cluster, replica, endpoints=None, lease=None, connections=1):
        self.sockets = sockets
        self.supervisor = supervisor
        self.cluster = cluster
        self.replica = replica
        self.endpoints = endpoints      # lib.watcher.EndpointSliceWatcher, or None: always serve
        self.lease = lease              # lib.replicas.ReplicaLease: no tunnel before it was renewed once
        self.connections = connections  # tunnels per Service and replica, on distinct nodes where the edge can

    def owner(self, key):
        return TunnelOwner(self.cluster, key[0], key[1], self.replica)

    def own_tunnels(self, socket, key):
        tag = self.owner(key).tag
        return [t for t in socket.get("tunnels") or [] if t.get("owner") == tag]

    def ready_to_make_tunnels(self):
        """The leader removes tunnels whose replica has no Lease: never make one before ours exists."""
        return self.lease is None or self.lease.renewed.is_set()

    def record(self, key, svc, exposure, socket):
        """This replica's tunnels on the socket (made now where it has fewer than it wants); None while it
        may not make one."""
        own = self.own_tunnels(socket, key)[:self.connections]
        while len(own) < self.connections and (not own or len(own) < self.sockets.edge_nodes()):
            if not self.ready_to_make_tunnels():
                return None
            tunnel = self.sockets.add_tunnel(socket, self.owner(key).tag, nth=len(own))
            log.info("made this replica's tunnel (port %s, node %s)", tunnel["local_port"],
                     tunnel.get("tunnel_server") or "-", extra=_fields(key))
            own.append(tunnel)
        return Record(svc["metadata"]["uid"], exposure, socket["socket_id"], socket.get("dnsname", ""),
                      tuple(Tunnel(t["tunnel_id"], int(t["local_port"]), str(t.get("tunnel_server") or ""))
                            for t in own))

    def is_up(self, key, record):
        """Every connection of the record is up (or it is withdrawn: nothing should run)."""
        return record.withdrawn or all(self.supervisor.is_up(connection_key(key, i))
                                       for i in range(len(record.tunnels)))

    def apply(self, key, record, user_name):
        """Run or withdraw the forwards as the Service's endpoints say; True when that changed `withdrawn`."""
        ready = self.endpoints.ready(key) if self.endpoints is not None else None
        withdrawn = ready == 0
        changed = withdrawn != record.withdrawn
        record.withdrawn = withdrawn
        if withdrawn:
            self._remove(key)
            return changed
        for i, tunnel in enumerate(record.tunnels):
            self.supervisor.ensure(connection_key(key, i), TunnelSpec(
                tunnel.local_port, record.exposure.cluster_ip, record.exposure.port, user_name, tunnel.server))
        self._remove(key, start=len(record.tunnels))
        return changed

    def _remove(self, key, start=0):
        for i in range(start, max(self.connections, start + 1)):
            self.supervisor.remove(connection_key(key, i))

    def stop(self, key, record=None, drop_tunnel=False):
        """Stop serving; with drop_tunnel, delete this replica's tunnels too (its socket stays: retained,
        or a pool others serve)."""
        self._remove(key)
        if not (drop_tunnel and record):
            return
        socket = self.sockets.snapshot().get(record.socket_id)
        for tunnel in self.own_tunnels(socket, key) if socket else []:
            self.sockets.delete_tunnel(socket, tunnel)
            log.info("deleted this replica's tunnel (port %s)", tunnel.get("local_port"), extra=_fields(key))


def _fields(key):
    return {"namespace": key[0], "service": key[1]}
