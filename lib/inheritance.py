"""The previous release's sockets that this cluster inherits, written down once.

The previous release named sockets `k8s/<cluster-name>/<ns>/<name>` with a
cluster name that defaulted to "default", so two clusters on one account could
both claim the same names. An upgrade must keep every public name with no
manual step, without letting a fresh install claim another cluster's sockets.

So the first time this release leads, it takes an inventory: a previous-release
socket is inherited when a Service of this cluster records its id and the
socket's name claims that same namespace and name (what the previous release
did for every Service it exposed). The result is written to a ConfigMap in the
controller's own namespace, named after the cluster identity, and from then on
only read. A Service copied or restored later, carrying an old id, inherits
nothing; a fresh install has no such Services and inherits nothing; sockets of
the previous release that no Service recorded are left alone (and listed once
in the log, so their owner can delete them).
"""

import hashlib
import json
import logging

from lib.ownership import previous_release_key
from lib.services import SOCKET_ID, key_of

log = logging.getLogger(__name__)


def configmap_name(cluster):
    return "mysocketd-inherited-" + hashlib.sha256(cluster.encode()).hexdigest()[:12]


def take_inventory(services, sockets):
    """{socket_id: (namespace, name)} of previous-release sockets that Services here record as theirs."""
    inherited = {}
    for svc in services:
        recorded = ((svc["metadata"].get("annotations") or {}).get(SOCKET_ID) or "").strip()
        socket = sockets.get(recorded)
        if socket is not None and previous_release_key(socket.get("name") or "") == key_of(svc):
            inherited[recorded] = key_of(svc)
    return inherited


def unclaimed(sockets, inherited):
    """Previous-release sockets on the account that this cluster did not inherit (left alone)."""
    return [s for s in sockets.values()
            if previous_release_key(s.get("name") or "") and s["socket_id"] not in inherited]


def load_or_take(kube, namespace, cluster, services, sockets):
    """The inherited sockets: read from the ConfigMap, or inventoried now and written there."""
    name = configmap_name(cluster)
    data = kube.configmap(namespace, name)
    if data is None:
        inherited = take_inventory(services, sockets)
        body = {"cluster": cluster, "sockets.json": json.dumps({k: list(v) for k, v in sorted(inherited.items())})}
        data = kube.create_configmap(namespace, name, body)     # another leader may have won: its copy counts
        log.info("took the inventory of previous-release sockets: inherited %d", len(inherited),
                 extra={"configmap": f"{namespace}/{name}"})
        for socket in unclaimed(sockets, inherited):
            log.info("left alone: socket %s (%s) was named by a previous release, and no Service of this "
                     "cluster records it", socket.get("name"), socket.get("dnsname"),
                     extra={"socket_id": socket["socket_id"]})
    return _parse(data, f"{namespace}/{name}", cluster)


def load(kube, namespace, cluster):
    """The inherited sockets as the leader wrote them down; None before any leader has (so followers,
    and `mysocketd --uninstall`, only read)."""
    data = kube.configmap(namespace, configmap_name(cluster))
    return None if data is None else _parse(data, f"{namespace}/{configmap_name(cluster)}", cluster)


def _parse(data, where, cluster):
    if data.get("cluster") != cluster:
        raise ValueError(f"ConfigMap {where} belongs to cluster {data.get('cluster')!r}, not {cluster!r}")
    return {k: tuple(v) for k, v in json.loads(data.get("sockets.json") or "{}").items()}
