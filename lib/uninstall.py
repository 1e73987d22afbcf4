"""`mysocketd --uninstall`: take away everything mysocketd made in this cluster, and nothing else.

Why it exists: a controller that is deleted while its finalizer sits on
Services leaves every namespace that holds one stuck in Terminating, and its
sockets live on at the edge. This command, run as mysocketd's own
ServiceAccount (a Job, or Helm's pre-delete hook), ends both and exits; it
never waits on anything without a bound.

Why in this order:
1. Whose: the cluster identity and, once no controller runs (2), the
   inherited sockets are read exactly as the controller reads them
   (lib/identity.py, lib/inheritance.py, but no new inventory: a cluster that
   never led inherited nothing), so only sockets that lib/ownership.py gives
   to this cluster, and to the watched namespace when there is one, are ever
   deleted.
2. No controller may fight it: mysocketd's Deployment is scaled to 0 (a
   replica left running would expose everything again once the finalizers
   are gone), then the leader Lease is taken even from a holder, and while a
   holder or a replica may still have been writing, the command waits one
   lease duration: a leader stops writing within its renew deadline, which is
   shorter. Its own writes are fenced by that Lease like the controller's.
3. The sockets first (that is what stops the exposure at the edge): this
   cluster's own are deleted, its Services' and (for a cluster-wide install,
   the only kind that serves them) its Gateways' and Ingresses'; of a pool's shared socket only this cluster's
   tunnels go, and the socket only through the edge's sparing delete, so the
   other members keep the name. Then the Services: the finalizer
   mysocket.io/cleanup, the annotations and the mysocket.io/Serving condition
   mysocketd wrote, and status.loadBalancer only on Services of class
   mysocket.io/tunnel; and the Leases that killed replicas left. The Kubernetes side is done even when the edge cannot
   be reached, so namespaces never hang on it; the sockets left are named
   and the exit status is 1, and running it again finishes the job.
4. One more look at both, for a write that a stopping replica had in flight.

Exit status: 0 when nothing of this cluster's is left; 1 when something is
(the log says what); 2 for a mistake in how it was run (RBAC, identity).
"""

import dataclasses
import logging
import socket as pysocket
import threading
import time
import uuid

from lib import identity, inheritance, kube, mysocket, pools, replicas, services
from lib.apierrors import Conflict, Forbidden, KubeError, NoNamespace, NotFound
from lib.controller import OURS, SERVING_CONDITION
from lib.leader import Fence, Fenced, LeaderElector
from lib.leases import Leases, now_micro
from lib.ownership import Ownership
from lib.sockets import Sockets

log = logging.getLogger(__name__)

SCALE_TIMEOUT = 120.0       # for the Deployment's replicas to be gone
IDENTITY_TIMEOUT = 60.0     # for an apiserver that does not answer yet
LEASE_SECONDS = 10          # lib/leader.py's default lease: within it, a leader that lost the Lease stops writing


class Refused(Exception):
    """A mistake in how the command was run; the message says what to do (exit status 2)."""


@dataclasses.dataclass
class Outcome:
    deleted: list = dataclasses.field(default_factory=list)     # dnsnames of the sockets deleted
    pools_left: list = dataclasses.field(default_factory=list)  # pools this cluster no longer serves
    released: list = dataclasses.field(default_factory=list)    # "namespace/name" of the Services let go
    left: list = dataclasses.field(default_factory=list)        # what could not be removed, in words


def run(cfg, k8s, *, clock=time.monotonic, sleep=time.sleep):
    """The whole command; returns the exit status."""
    elector = None
    try:
        cluster = _identity(cfg, k8s)           # first: a refusal here has changed nothing
        fence, elector = _stop_the_controller(cfg, k8s, clock, sleep)
        liveness = replicas.Liveness(k8s.rest, cfg.lease_namespace, clock=clock)
        liveness.refresh()                      # from here on, a Lease that does not change is a dead replica's
        ownership = _ownership(cfg, k8s, cluster)   # once stopped: no leader is taking the inventory meanwhile
    except (Refused, *kube.ERRORS) as e:
        if elector is not None:
            elector.stop()
        if isinstance(e, Refused):
            log.error("%s", e)
            return 2
        log.error("cannot reach the Kubernetes API: %s; nothing was deleted, run it again", kube.describe_error(e))
        return 1
    api = mysocket.Client(cfg.api_url, cfg.email, cfg.password, credentials=cfg.credentials)
    sockets = Sockets(api, ownership, fence)
    outcome = Outcome()
    try:
        for look in ("", " (looking again)"):
            _delete_sockets(cfg, sockets, outcome, look)
            _leave_pools(cfg, sockets, outcome, look)
            _release_services(k8s, fence, outcome, look)
            if outcome.left:
                break
        _delete_replica_leases(liveness, ownership.cluster, k8s, clock, sleep)
    except Fenced as e:
        outcome.left.append(f"another mysocketd took the Lease back ({e}): stop it and run this again")
    except kube.ERRORS as e:
        outcome.left.append(f"the Kubernetes API failed ({kube.describe_error(e)}): run this again")
    finally:
        if elector is not None:
            elector.stop()                      # released: the Deployment is at 0, nobody takes it
        k8s.events.flush()
    log.info("uninstalled: deleted %d sockets of cluster %s, left %d pools, released %d Services%s",
             len(outcome.deleted), ownership.cluster, len(outcome.pools_left), len(outcome.released),
             "; LEFT: " + "; ".join(outcome.left) if outcome.left else "",
             extra={"deleted": outcome.deleted, "pools_left": outcome.pools_left, "released": outcome.released})
    return 1 if outcome.left else 0


def _identity(cfg, k8s):
    """This cluster's identity, as the controller resolves it; waits for the apiserver a bounded time."""
    stopping = threading.Event()
    timer = threading.Timer(IDENTITY_TIMEOUT, stopping.set)
    timer.start()
    try:
        cluster = identity.resolve(k8s, cfg.cluster_name, stopping)
    except identity.NoIdentity as e:
        raise Refused(str(e)) from None
    finally:
        timer.cancel()
    if cluster is None:
        raise Refused(f"the Kubernetes API did not answer for {IDENTITY_TIMEOUT:.0f}s; nothing was changed")
    return cluster


def _ownership(cfg, k8s, cluster):
    """Whose sockets are whose: the controller's rule, with the inherited sockets as written down."""
    try:
        inherited = inheritance.load(k8s, cfg.lease_namespace, cluster) or {}    # none: this cluster never led
    except ValueError as e:
        raise Refused(str(e)) from None
    except Forbidden:
        raise Refused(f"cannot read the inherited-sockets ConfigMap in {cfg.lease_namespace} (HTTP 403): run this "
                      "as mysocketd's ServiceAccount, whose Role grants it") from None
    log.info("cluster identity %s; %d inherited sockets", cluster, len(inherited), extra={"cluster": cluster})
    return Ownership(cluster, inherited=inherited, adopt_original=cfg.adopt_original_sockets)


# -- 2. no controller running ---------------------------------------------------------------------

def _stop_the_controller(cfg, k8s, clock, sleep):
    """(Fence, elector or None): the Deployment at 0 replicas, and the Lease ours, fenced."""
    was_running = _scale_to_zero(cfg, k8s, clock, sleep)
    identity_ = f"mysocketd-uninstall-{pysocket.gethostname()}-{uuid.uuid4().hex[:6]}"
    previous, duration = _seize_lease(k8s.rest, cfg.lease_namespace, cfg.lease_name, identity_)
    if previous is None and duration is None:
        return Fence(), None                    # no such namespace: no controller can hold a Lease there
    elector = LeaderElector(k8s.rest, cfg.lease_namespace, cfg.lease_name, identity=identity_)
    elector.start()                             # renews what was just seized
    if previous or was_running:
        # A released Lease says 1 s, but a replica that released it on SIGTERM may still finish a call
        # it had sent: wait a whole lease of the controller's at least.
        duration = max(duration, LEASE_SECONDS)
        log.info("waiting %ds, one lease duration, for %s to stop writing", duration,
                 f"the previous leader {previous}" if previous else "the stopped replicas")
        sleep(duration)
    fence = Fence(elector)
    deadline = clock() + 10
    while not fence.is_open() and clock() < deadline:
        sleep(0.2)
    fence.check()
    return fence, elector


def _scale_to_zero(cfg, k8s, clock, sleep):
    """Scale mysocketd's Deployment to 0 and wait until it has no replica; False if there was none."""
    if not cfg.deployment:
        log.warning("--deployment is empty: not stopping any Deployment; a mysocketd still running will expose "
                    "the Services again once this ends")
        return False
    path = f"/apis/apps/v1/namespaces/{cfg.lease_namespace}/deployments/{cfg.deployment}/scale"
    where = f"deployment {cfg.lease_namespace}/{cfg.deployment}"
    try:
        scale = k8s.rest.json("GET", path)
        if (scale.get("spec") or {}).get("replicas"):
            k8s.rest.json("PATCH", path, body={"spec": {"replicas": 0}}, content_type=kube.MERGE)
            log.info("scaled %s to 0 replicas", where)
    except NotFound:
        log.info("no %s: nothing to stop", where)
        return False
    except Forbidden:
        raise Refused(f"cannot scale {where} to 0 (HTTP 403): run this as mysocketd's ServiceAccount with "
                          "--deployment naming its Deployment, or stop mysocketd yourself and pass --deployment ''"
                          ) from None
    deadline = clock() + SCALE_TIMEOUT
    while True:
        replicas = (k8s.rest.json("GET", path).get("status") or {}).get("replicas") or 0
        if not replicas:
            return True
        if clock() >= deadline:
            raise Refused(f"{where} still has {replicas} replicas after {SCALE_TIMEOUT:.0f}s; delete them, "
                          "then run this again")
        sleep(0.5)


def _seize_lease(rest, namespace, name, identity_):
    """Make the Lease ours even if someone holds it: (previous holder, its duration in seconds).

    (None, None) when the namespace does not exist. A write carries the resourceVersion it read,
    so a renewal racing this one makes it read and try again instead of being overwritten blindly.
    """
    store = Leases(rest, namespace)
    now = now_micro()
    spec = {"holderIdentity": identity_, "leaseDurationSeconds": LEASE_SECONDS, "acquireTime": now,
            "renewTime": now}
    for _ in range(5):
        try:
            lease = store.get(name)
            if lease is None:
                store.create(name, {**spec, "leaseTransitions": 0})
                return "", LEASE_SECONDS
            old = lease.get("spec") or {}
            previous = old.get("holderIdentity") or ""
            store.replace(name, lease, {**spec, "leaseTransitions": (old.get("leaseTransitions") or 0) + 1})
        except NoNamespace:
            log.info("no namespace %s: no mysocketd can be leading there", namespace)
            return None, None
        except Forbidden as e:
            raise _lease_refused(namespace, e) from None
        except Conflict:
            continue
        if previous:
            log.info("took the Lease %s/%s from %s", namespace, name, previous)
        return previous, int(old.get("leaseDurationSeconds") or LEASE_SECONDS)
    raise Refused(f"the Lease {namespace}/{name} kept changing under this command: is a controller still running?")


def _lease_refused(namespace, error):
    return Refused(f"cannot take the leader Lease in {namespace} (HTTP {error.status}): run this as mysocketd's "
                   "ServiceAccount, with --lease-namespace set to mysocketd's namespace")


# -- 3. the sockets, then the Services --------------------------------------------------------------

def _delete_sockets(cfg, sockets, outcome, look):
    """Delete every socket of this cluster (in the watched namespace, if one is set).

    Gateways and Ingresses are served only by a cluster-wide install (lib/routecontroller.py), so their
    sockets go only with one: a namespaced install's uninstall leaves a cluster-wide install's alone."""
    try:
        sockets.invalidate()
        owned = [(s, (o.namespace, o.name)) for s, o in sockets.owned()
                 if not cfg.namespace or o.namespace == cfg.namespace]
        if not cfg.namespace:
            owned += [(s, (ns, f"{kind} {name}")) for s, (kind, ns, name) in sockets.owned_routes()]
    except mysocket.ApiError as e:
        outcome.left.append(f"could not list the account's sockets at {cfg.api_url} ({e}): the sockets of this "
                            "cluster are still there; run this again once the edge answers")
        return
    for i, (socket, owner) in enumerate(owned):
        try:
            sockets.delete(socket)
        except mysocket.Unavailable as e:       # the rest would only wait for the same timeouts
            rest = ", ".join(str(s.get("dnsname") or s["socket_id"]) for s, _ in owned[i:])
            outcome.left.append(f"the edge stopped answering ({e}); sockets left: {rest}")
            return
        except mysocket.ApiError as e:
            outcome.left.append(f"socket {socket.get('dnsname')} ({socket['socket_id']}): {e}")
            continue
        outcome.deleted.append(socket.get("dnsname") or socket["socket_id"])
        log.info("deleted socket %s%s", socket.get("dnsname"), look,
                 extra={"socket_id": socket["socket_id"], "namespace": owner[0], "service": owner[1]})


def _leave_pools(cfg, sockets, outcome, look):
    """Take this cluster's tunnels (this namespace's, if one is set) off every pool's socket, and the
    socket with them only if no other member's tunnel is on it (the edge decides, atomically)."""
    prefix = pools.tunnel_prefix(sockets.ownership.cluster, cfg.namespace)
    try:
        for socket, pool in list(sockets.pools()):
            if not pools.tunnels_of(socket, prefix):
                continue
            last = pools.withdraw(sockets, socket, prefix)
            if last:
                outcome.deleted.append(socket.get("dnsname") or socket["socket_id"])
            outcome.pools_left.append(pool)
            log.info("left pool %s%s%s", pool, ": deleted its socket, no other member serves it" if last
                     else "; other members still serve it, so its socket stays", look,
                     extra={"socket_id": socket["socket_id"]})
    except mysocket.ApiError as e:
        outcome.left.append(f"could not leave the pools at {cfg.api_url} ({e}): this cluster's tunnels may still be "
                            "on them; run this again once the edge answers")


def _release_services(k8s, fence, outcome, look, rounds=3):
    """Remove the finalizer and mysocketd's annotations (and our class's status) from every Service."""
    for _ in range(rounds):
        pending = [svc for svc in k8s.list_services()[0] if _ours_on(svc)]
        if not pending:
            return
        changed_meanwhile = False
        for svc in pending:
            try:
                _release(k8s, fence, svc)
            except kube.ChangedMeanwhile:
                changed_meanwhile = True
                continue
            except NotFound:
                continue                            # deleted meanwhile: nothing left to release
            except Conflict:
                changed_meanwhile = True
                continue
            except KubeError as e:
                outcome.left.append(f"Service {_name(svc)}: {kube.describe_error(e)}")
                continue
            outcome.released.append(_name(svc))
            log.info("released Service %s%s", _name(svc), look)
        if not changed_meanwhile:
            return
    outcome.left.append("some Services kept changing while they were released; run this again")


def _ours_on(svc):
    meta = svc["metadata"]
    return (services.FINALIZER in (meta.get("finalizers") or [])
            or any(k in (meta.get("annotations") or {}) for k in OURS)
            or services.has_condition(svc, SERVING_CONDITION)
            or (services.of_our_class(svc) and _lb_ingress(svc)))


def _release(k8s, fence, svc):
    annotations = svc["metadata"].get("annotations") or {}
    fence.check()
    if services.of_our_class(svc) and _lb_ingress(svc):
        k8s.set_load_balancer_hostname(svc, None)
    if services.has_condition(svc, SERVING_CONDITION):
        fence.check()
        k8s.remove_condition(svc, SERVING_CONDITION)
    drop = {k: None for k in OURS if k in annotations}
    has_finalizer = services.FINALIZER in (svc["metadata"].get("finalizers") or [])
    if drop or has_finalizer:
        fence.check()
        k8s.patch_metadata(svc, annotations=drop, remove_finalizer=services.FINALIZER if has_finalizer else None)
    if annotations.get(services.DNSNAME) and not svc["metadata"].get("deletionTimestamp"):
        k8s.event(svc, "Normal", "Uninstalled", f"mysocketd was uninstalled: {annotations[services.DNSNAME]} is "
                  "no longer exposed, and its finalizer and annotations are removed")


def _delete_replica_leases(liveness, cluster, k8s, clock, sleep):
    """The replicas' proofs of life (lib/replicas.py) that killed replicas left behind; each replica
    deletes its own on a clean stop. Only this cluster's, and only those the leader's own rule calls
    gone (unchanged for a whole replica lease, by this command's clock): one still renewed belongs to a
    replica that runs (another install sharing the namespace), and deleting it would tell that install's
    leader its replica is gone. Waits at most one replica lease, and only while such a Lease is there."""
    deadline = clock() + liveness.lease_seconds + 1
    while True:
        liveness.refresh()
        leases = liveness.leases(cluster)
        if not leases or all(liveness.gone(cluster, r) for r in leases) or clock() >= deadline:
            break
        sleep(1)
    for replica, name in leases.items():
        if not liveness.gone(cluster, replica):
            log.info("left the Lease of replica %s/%s: it is still renewed", cluster, replica)
            continue
        try:
            if not liveness.store.delete(name):
                continue
        except KubeError as e:
            log.warning("cannot delete the Lease of replica %s/%s: %s", cluster, replica, e)
            continue
        log.info("deleted the Lease that replica %s/%s left", cluster, replica)


def _lb_ingress(svc):
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")


def _name(svc):
    return "{namespace}/{name}".format(**svc["metadata"])

