#!/usr/bin/env python3
"""mysocketd: put annotated Kubernetes Services on the public internet through a Mysocket-compatible edge.

Entry point only: parse flags, set up logging, log the effective
configuration (secrets masked), wire the parts together and run until
SIGTERM. The signal handler only sets a flag; the loop then stops the ssh
children (SIGTERM, deadline, SIGKILL), deletes nothing remote and exits 0.

Every mistake a user can make at start-up (no edge, no cluster, a broken
kubeconfig, bad flags, missing credentials or key, a taken health port) ends
in one ERROR line that says what to do, and exit status 2; a traceback is
left for bugs. `--uninstall` runs lib/uninstall.py instead of the controller.
"""

import logging
import os
import signal
import sys
import threading

from lib import (config, health, identity, kube, logs, metrics, mysocket, processes, replicas, routecontroller,
                 sshargs, sshkeys, tunnels, uninstall)
from lib.controller import Controller
from lib.leader import Fence, LeaderElector
from lib.moves import NodeWatch
from lib.ownership import Ownership
from lib.probe import Prober
from lib.remote import Remote
from lib.runner import Runner, Session
from lib.serving import Serving
from lib.sockets import Sockets
from lib.watcher import EndpointSliceWatcher, ServiceWatcher
from lib.workqueue import WorkQueue

log = logging.getLogger("mysocketd")


def main(argv=None):
    try:
        cfg = config.load(argv)
    except config.ConfigError as e:
        logs.setup("text")
        log.error("%s", e)
        return 2
    logs.setup(cfg.log_format, cfg.log_level)
    log.info("starting", extra={"config": cfg.describe()})
    if cfg.uninstall:
        return _uninstall(cfg)
    try:
        ssh = sshargs.resolve_ssh()
        os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
        key_path, public_key = sshkeys.install_private_key(cfg.private_key, cfg.state_dir)
        known_hosts, strict = sshkeys.prepare_known_hosts(cfg.known_hosts, cfg.state_dir)
        # ssh writes its logs there itself (-E) and follows symlinks: the directory must be ours alone.
        sshkeys.secure_state_dir(os.path.join(cfg.state_dir, "ssh-logs"))
    except (sshargs.SshMissing, sshkeys.KeyProblem) as e:
        log.error("%s", e)
        return 2
    except OSError as e:
        log.error("cannot prepare the state directory %s: %s", cfg.state_dir, e.strerror)
        return 2

    stopping = threading.Event()

    def stop(*_):
        stopping.set()
        queue.wake()

    queue = WorkQueue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

    api_client = _api_client()
    if api_client is None:
        return 2
    k8s = kube.Kube(api_client, cfg.namespace)
    try:
        cluster = identity.resolve(k8s, cfg.cluster_name, stopping)
    except identity.NoIdentity as e:
        log.error("%s", e)
        return 2
    if cluster is None:
        return 0
    log.info("cluster identity %s (%s)", cluster, "--cluster-name" if cfg.cluster_name else "UID of kube-system",
             extra={"cluster": cluster})
    metrics.CLUSTER.labels(cluster).set(1)

    if not processes.become_subreaper():
        log.warning("cannot become the subreaper of the backgrounded ssh children; watching them through /proc")
    api = mysocket.Client(cfg.api_url, cfg.email, cfg.password, credentials=cfg.credentials)
    watcher = ServiceWatcher(k8s, queue)
    settings = sshargs.SshSettings(host=cfg.ssh_host, port=cfg.ssh_port, identity_file=key_path,
                                   known_hosts_file=known_hosts, strict_host_keys=strict, binary=ssh)
    supervisor = tunnels.Supervisor(settings, os.path.join(cfg.state_dir, "ssh-logs"))
    leader = None
    if cfg.leader_election:
        leader = LeaderElector(k8s.rest, cfg.lease_namespace, cfg.lease_name)
    fence = Fence(leader)
    ownership = Ownership(cluster, adopt_original=cfg.adopt_original_sockets)
    # A short budget, none in a burst: a reconcile hands its calls to the pool and the loop moves on; the
    # Service goes again the moment its call ends (lib/remote.py), so a burst has 8 calls on the way, not one.
    sockets = Sockets(api, ownership, fence, Remote(budget=0.01, notify=queue.wake, hurry=queue.ready))
    # Every replica serves every exposed Service through its own tunnel (lib/serving.py), proves it is
    # alive with a Lease of its own (lib/replicas.py), and withdraws where no endpoint is ready.
    replica = replicas.replica_name(cfg.state_dir)
    lease = None if cfg.dry_run else replicas.ReplicaLease(k8s.rest, cfg.lease_namespace, cluster, replica)
    endpoints = EndpointSliceWatcher(k8s, queue, services=watcher)
    serving = Serving(sockets=sockets, supervisor=supervisor, cluster=cluster, replica=replica,
                      endpoints=endpoints, lease=lease, connections=cfg.edge_connections)
    log.info("replica %s", replica, extra={"replica": replica})
    nodes = None if cfg.dry_run else NodeWatch(api)     # the edge's live nodes, read every second
    # Gateways, HTTPRoutes and Ingresses (lib/routecontroller.py): cluster-wide, one picture; not when
    # mysocketd watches one namespace only (their classes are cluster objects it may not read then).
    route_watchers, routes = {}, None
    if not cfg.namespace:
        route_watchers = routecontroller.watchers(kube.Kube(api_client, ""), queue)
        routes = routecontroller.RouteController(kube=k8s, sockets=sockets, supervisor=supervisor,
                                                 watchers=route_watchers, services=watcher, endpoints=endpoints,
                                                 queue=queue, fence=fence, cluster=cluster, replica=replica,
                                                 lease=lease)
    controller = Controller(kube=k8s, sockets=sockets, supervisor=supervisor, watcher=watcher, queue=queue,
                            user_name=None, serving=serving, liveness=replicas.Liveness(k8s.rest, cfg.lease_namespace),
                            home_namespace=cfg.lease_namespace, fence=fence, dry_run=cfg.dry_run, nodes=nodes,
                            routes=routes)
    controller.pools.in_use_elsewhere = lambda: routecontroller.serving_pools(routes)
    if routes is not None:
        watcher.also_read = routes.concerns     # a route's backend Service: its changes reach the routes
    prober = Prober(cfg.probe_url) if cfg.probe_url else None
    runner = Runner(config=cfg, session=Session(api, public_key), controller=controller, watcher=watcher,
                    supervisor=supervisor, queue=queue, known_hosts=known_hosts, leader=leader, prober=prober,
                    companions=[c for c in (endpoints, lease, nodes, *route_watchers.values()) if c is not None])

    if cfg.health_port:
        try:
            health.serve(cfg.health_port, runner)
        except OSError as e:
            log.error("cannot serve /healthz on port %d: %s: set --health-port to a free port (0 = off)",
                      cfg.health_port, e.strerror)
            return 2
    runner.run(stopping)
    log.info("stopped")
    return 0


def _api_client():
    """The Kubernetes client, or None after one ERROR line saying how to point it at a cluster."""
    try:
        api_client, source = kube.api_client()
    except kube.NoCluster as e:
        log.error("%s", e)
        return None
    log.info("talking to Kubernetes via %s", source)
    return api_client


def _uninstall(cfg):
    """`mysocketd --uninstall`: no ssh, no key, no health server; the exit status says whether all is gone."""
    api_client = _api_client()
    if api_client is None:
        return 2
    return uninstall.run(cfg, kube.Kube(api_client, cfg.namespace))


if __name__ == "__main__":
    sys.exit(main())
