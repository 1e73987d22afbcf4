"""Reconcile one Service: make its socket, this replica's tunnel and ssh child match what it asks for.

Two roles, decided per reconcile by the leadership fence:

- every replica (lib/serving.py) serves every exposed Service through a
  tunnel of its own on the Service's socket: active-active, so losing a pod
  costs no failed request. A replica that does not lead follows the socket the
  leader recorded on the Service (`mysocket.io/socket-id`), once ownership
  says it is that Service's;
- the leader alone creates, replaces and deletes sockets, writes Services
  (finalizer, annotations, status), and sweeps (lib/sweep.py). Every one of
  those writes checks the fence first, so a leader that lost the apiserver
  stops before a standby starts.

`reconcile(key)` is idempotent: run twice, the second run changes nothing and
makes no remote call. What the leader created lives on the Service, so a
restarted controller adopts instead of creating again. In memory each replica
keeps only a `Record` per Service it serves: a cache of the remote truth,
dropped whenever that truth is in doubt.

Whose a socket is, `lib.ownership` decides, from the socket's own name; the
ids on a Service only save a lookup. A Service whose recorded id leads to a
socket that is not its own (a copy, a restore, an edit) gets a socket of its
own and a Warning Event, and the other socket is never touched. A Service with
`mysocket.io/pool` shares its pool's socket with other clusters: it joins with
its own tunnels and leaves without taking the name from the others.

Errors are per Service: a transient API error requeues that Service with its
own backoff, a user's mistake becomes a Warning Event on it, and nothing one
Service does stops the others.
"""

import json
import logging
import time

from lib import inheritance, kube, metrics, mysocket, protected, services
from lib.apierrors import Conflict, NotFound
from lib.customnames import CONDITION as HOSTNAMES_CONDITION
from lib.customnames import CustomNames
from lib.leader import Fence, Fenced
from lib.moves import Moves
from lib.ownership import pool_socket_name
from lib.pools import Pools
from lib.remote import Pending
from lib.routecontroller import ROUTES
from lib.serving import Record, Serving
from lib.services import DNSNAME, FINALIZER, LAST_VALID, SERVED_BY, SOCKET_ID, TUNNEL_ID, InvalidAnnotation
from lib.sockets import differences, lists_differ, protocol_differs, socket_fields
from lib.sweep import Sweep

log = logging.getLogger(__name__)
OURS = (DNSNAME, SOCKET_ID, TUNNEL_ID, LAST_VALID, SERVED_BY)
SWEEP = ("", "(sweep)")             # the key the sweep's own remote calls are made under
TAKE_LEAD = ("", "(take lead)")     # ... and taking the lead's
SERVING_CONDITION = "mysocket.io/Serving"

__all__ = ["Controller", "Record", "SWEEP", "TAKE_LEAD"]


class Controller:
    def __init__(self, *, kube, sockets, supervisor, watcher, queue, user_name, serving=None, liveness=None,
                 home_namespace="mysocket", fence=None, dry_run=False, nodes=None, routes=None):
        self.kube = kube
        self.sockets = sockets
        self.remote = sockets.remote
        self.ownership = sockets.ownership
        self.supervisor = supervisor
        self.watcher = watcher
        self.queue = queue
        self.user_name = user_name
        self.serving = serving or Serving(sockets=sockets, supervisor=supervisor, cluster=self.ownership.cluster,
                                          replica="single")
        self.home_namespace = home_namespace    # where the inheritance ConfigMap lives (lib/inheritance.py)
        self.fence = fence or Fence()
        self.dry_run = dry_run
        self.routes = routes            # lib/routecontroller.RouteController, or None
        self.customnames = CustomNames(sockets, self._event, self.queue.add, self._say_hostnames)
        self.records = {}
        self.failures = {}      # key -> consecutive failed reconciles, for backoff
        self.surprises = {}     # key -> the last unexpected error's signature, to log its traceback once
        self.secret_versions = {}   # key -> the protected Secret's version the edge has (rotation)
        self.recheck = set()        # keys whose Secret the next reconcile reads again (the sweep asks)
        self._inherited_loaded = False
        self._taking_lead = False
        self.sweep = Sweep(self, liveness)
        # The edge moved a tunnel to another node; `nodes`: lib.moves.NodeWatch, the edge's live nodes.
        self.moves = Moves(sockets=sockets, queue=queue, nodes=nodes)
        self.pools = Pools(sockets=sockets, watcher=watcher, cluster=self.ownership.cluster, scope=kube.namespace,
                           event=self._event)

    # -- leadership --------------------------------------------------------------

    def take_lead(self):
        """Just became the (confirmed) leader: forget every cached view of remote state and look again.

        False while the account's socket list is still on its way (the first lead takes the inventory
        of inherited sockets from it): the runner calls again, and nothing is decided before it is done.
        """
        if not self._taking_lead:
            self.sockets.invalidate()
            self.remote.forget()
            self.records.clear()                # the children keep running: ensure() of the same spec is a no-op
            self.secret_versions.clear()
            if self.sweep.liveness is not None:
                self.sweep.liveness.forget()    # no history: nothing is stale before a whole lease was watched
            self._taking_lead = True
        self.remote.begin(TAKE_LEAD)
        try:
            self._load_inheritance(write=True)
        except Pending:
            return False
        except BaseException:
            self._taking_lead = False           # the next lead starts afresh
            raise
        self._taking_lead = False
        for key in set(self.watcher.keys()) | {k[:2] for k in self.supervisor.forwards}:
            self.queue.add(key)
        if self.routes is not None:
            self.routes.take_lead()
        return True

    def stand_down(self):
        """Another replica leads: this one keeps serving (its own tunnels) and forgets what it decided."""
        log.info("not the leader (any more): serving as a follower")
        self._taking_lead = False
        self.remote.forget()

    def _load_inheritance(self, write):
        """The previous release's sockets this cluster inherits: taken by the leader, read by the others.

        The ConfigMap's calls run off the loop like every other (lib/remote.py): Pending until they end."""
        if self._inherited_loaded:
            return True
        if write:
            self.fence.check()
            services, sockets = [self.watcher.get(k) for k in self.watcher.keys()], self.sockets.snapshot()
            self.ownership.inherited = self.remote.call(
                "inheritance", inheritance.load_or_take, self.kube, self.home_namespace, self.ownership.cluster,
                [s for s in services if s is not None], sockets, guard=self.fence.check)
        else:
            inherited = self.remote.call("inheritance", inheritance.load, self.kube, self.home_namespace,
                                         self.ownership.cluster)
            if inherited is None:
                return False                    # the leader has not taken the inventory yet
            self.ownership.inherited = inherited
        self._inherited_loaded = True
        return True

    # -- Gateways, HTTPRoutes, Ingresses (lib/routecontroller.py) -----------------

    def _reconcile_routes(self):
        started = time.monotonic()
        self.remote.begin(ROUTES)
        try:
            self.routes.user_name = self.user_name
            self.routes.reconcile()
            self.failures.pop(ROUTES, None)
            self.remote.done_with(ROUTES)
        except Pending:
            pass
        except Fenced:
            self.queue.add(ROUTES, 1.0)
        except (mysocket.ApiError, *kube.ERRORS) as e:
            self._retry_later(ROUTES, e)
        except Exception as e:  # noqa: BLE001 -- contained: Services carry on
            self._unexpected(ROUTES, e)
            self._retry_later(ROUTES, e)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    # -- one Service -------------------------------------------------------------

    def reconcile(self, key):
        if self.routes is not None:
            if self.routes.owns(key):
                self._reconcile_routes()
                return
            if self.routes.concerns(key):
                self.queue.add(ROUTES)
                if not self.watcher.concerns(key) and key not in self.records:
                    return                      # a route's backend only: nothing of its own to do
        started = time.monotonic()
        self.remote.begin(key)
        try:
            self._reconcile(key, self.watcher.get(key))
            self.failures.pop(key, None)
            self.surprises.pop(key, None)
            self.remote.done_with(key)
        except mysocket.BadCredentials:
            raise                              # the session's problem, not this Service's
        except Pending:
            pass                                # a slow call: queued again when it ends (lib/remote.py)
        except Fenced:
            self.queue.add(key, 1.0)            # not this Service's fault: decided by the next confirmed leader
        except (mysocket.ApiError, *kube.ERRORS) as e:
            self._retry_later(key, e)
        except Exception as e:  # noqa: BLE001 -- a bug or an odd answer: contained to this one Service
            self._unexpected(key, e)
            self._retry_later(key, e)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            metrics.EXPOSED_SERVICES.set(len(self.records))

    def _reconcile(self, key, svc):
        leading = self.fence.is_open()
        record = self.records.get(key)
        if record is not None and self.moves.due(key):
            del self.records[key]           # read where its tunnels are placed now (lib/moves.py)
            record = None
        if svc is None or (record and record.uid != svc["metadata"]["uid"]):
            self._forget(key)               # deleted (its finalizer, if any, was handled before)
            if svc is None:
                return
        meta = svc["metadata"]
        has_finalizer = FINALIZER in (meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            if leading and has_finalizer:
                self._teardown(key, svc, deleting=True)
            else:
                self._forget(key)           # the leader deletes the socket, and this replica's tunnel with it
            return
        try:
            exposure, valid = services.desired_exposure(svc), True
        except InvalidAnnotation as e:
            # A typo must not take a working public name down: serve the last valid options, resolved
            # against the Service as it is now; or nothing, when those no longer fit it.
            if leading:
                self._event(svc, "Warning", "InvalidAnnotation", str(e))
            log.warning("invalid annotation: %s", e, extra=_fields(key))
            exposure, valid = (services.last_valid_exposure(svc) if e.keeps_tunnel else None), False
            if exposure is None:
                self._stop_forwarding(key, svc, e, leading)
                return
        if exposure is None:
            annotated = any((meta.get("annotations") or {}).get(a) for a in OURS)
            if leading and (has_finalizer or (annotated and not services.retained(svc))):
                self._teardown(key, svc, deleting=False)
            else:
                self.serving.stop(key, self.records.pop(key, None), drop_tunnel=True)
            return
        if self.dry_run:
            if record is None or record.exposure != exposure:
                log.info("dry-run: would expose %s:%d as a %s socket", exposure.cluster_ip, exposure.port,
                         exposure.socket_type, extra=_fields(key))
                self.records[key] = Record(meta["uid"], exposure, "", "")
            return
        recheck = key in self.recheck
        self.recheck.discard(key)
        if record is None or record.exposure != exposure or (leading and (recheck or key not in self.secret_versions)):
            if leading and FINALIZER not in (meta.get("finalizers") or []):
                # Before anything remote exists, so a deletion can never skip the clean-up.
                svc = self._patch(svc, add_finalizer=FINALIZER)
            socket = self._ensure_socket(key, svc, exposure) if leading else self._follow(key, svc, exposure)
            if socket is None:
                return
            record = self.serving.record(key, svc, exposure, socket)
            if record is None:
                self.queue.add(key, 0.5)        # this replica's Lease first, then its tunnel
                return
            self.records[key] = record
        # The child first: the public name works ~10 ms sooner, and the write-back cannot fail it.
        if self.serving.apply(key, record, self.user_name) and leading:
            self._say_serving(svc, record)
        self.moves.settle(key, lambda: self.serving.is_up(key, record))
        if leading:
            self._write_back(svc, record, valid)
            # Custom hostnames: only a Service that asks for some lists the sockets again for them.
            socket = self.sockets.cached(record.socket_id) or (
                self.sockets.snapshot().get(record.socket_id) if exposure.hostnames else None)
            if socket is not None:
                self.customnames.sync(key, svc, exposure, socket)

    def _stop_forwarding(self, key, svc, error, leading):
        """Nothing valid to forward to: stop the child, keep the socket and the name, say so once."""
        if key in self.supervisor.forwards and leading:
            dnsname = (svc["metadata"].get("annotations") or {}).get(DNSNAME, "")
            self._event(svc, "Warning", "TunnelStopped", f"not forwarding {dnsname} any more ({error.reason}); "
                        "the socket and its name are kept")
            log.warning("stopped forwarding: %s", error, extra=_fields(key))
        self.serving.stop(key)
        self.records.pop(key, None)

    def _follow(self, key, svc, exposure):
        """Not the leader: the socket the leader recorded on the Service, if it is really that Service's."""
        recorded = ((svc["metadata"].get("annotations") or {}).get(SOCKET_ID) or "").strip()
        if not recorded:
            return None                         # the leader has not made it yet; its write queues us again
        socket = self.sockets.snapshot().get(recorded)
        if socket is None:
            self.sockets.invalidate()           # made after this replica's last look
            self.queue.add(key, 1.0)
            return None
        if exposure.pool:
            return socket if socket.get("name") == pool_socket_name(exposure.pool) else None
        if not self.ownership.is_for(socket, key):
            self._load_inheritance(write=False)     # an inherited socket is known once the ConfigMap is read
        return socket if self.ownership.is_for(socket, key) else None

    def _ensure_socket(self, key, svc, exposure):
        annotations = svc["metadata"].get("annotations") or {}
        protected = self._protected_credentials(svc, exposure)
        if protected is False:
            return None
        fields = socket_fields(exposure, self.ownership.name_for(*key), protected[:2] if protected else None)
        found = self.sockets.find(key, annotations.get(SOCKET_ID, ""), pool=exposure.pool)
        if found.foreign is not None:
            self._not_ours(key, svc, found.foreign)
        socket = found.socket
        if socket is not None and differences(socket, fields):
            changed = ", ".join(differences(socket, fields))
            if exposure.pool:
                self._event(svc, "Warning", "PoolMismatch", f"pool {exposure.pool}'s socket has other options "
                            f"({changed}) than this Service asks for; every member must ask for the same")
                return None
            self._event(svc, "Normal", "SocketReplaced", f"socket options changed ({changed}); the API cannot "
                        f"update a socket, so it is replaced and the DNS name {socket.get('dnsname')} changes")
            self.sockets.delete(socket)
            socket = None
        if socket is None:
            socket = self.sockets.create(fields, self.serving.owner(key).tag, pool=exposure.pool)
            self._say_created(key, svc, exposure, socket)
        elif found.how != "id":
            said = self.sockets.creation_said(socket["socket_id"])
            if said is False:       # made by this controller; its create's answer came after a newer list
                self._say_created(key, svc, exposure, socket)
            elif said is None:
                self._event(svc, "Normal", "SocketAdopted", f"adopted socket {socket['socket_id']} "
                            f"({socket.get('dnsname')}) found by its {found.how} name")
                log.info("adopted socket %s by %s name", socket.get("dnsname"), found.how,
                         extra=_fields(key, socket["socket_id"]))
        elif protected and self.secret_versions.get(key) != protected[2]:
            # Rotated (or not known since this leader started): the edge gets the Secret's credentials
            # in place, so the name stays.
            self.sockets.update_protection(socket, fields)
            log.info("gave the edge the protected Secret's current credentials", extra=_fields(key))
        self.secret_versions[key] = protected[2] if protected else ""
        if protocol_differs(socket, fields):
            self._change_protocol(key, svc, exposure, socket, fields)
        if lists_differ(socket, fields):
            self._change_cloud_auth(key, svc, exposure, socket, fields)
        return socket

    def _say_created(self, key, svc, exposure, socket):
        self._event(svc, "Normal", "SocketCreated", f"created socket {socket['socket_id']}: "
                    f"{socket.get('dnsname')}" + (f" (pool {exposure.pool})" if exposure.pool else ""))
        log.info("created socket %s", socket.get("dnsname"), extra=_fields(key, socket["socket_id"]))

    def _change_cloud_auth(self, key, svc, exposure, socket, fields):
        """mysocket.io/cloud-auth-emails or -domains changed: the edge gets the lists in place (a visitor's
        next request is checked against them). A pool's socket is shared: a member that disagrees is warned."""
        changed = ", ".join(lists_differ(socket, fields))
        if exposure.pool:
            self._event(svc, "Warning", "PoolMismatch", f"pool {exposure.pool}'s socket has other cloud-auth lists "
                        f"({changed}) than this Service asks for; every member must ask for the same")
            return
        self.sockets.update_cloud_auth(socket, fields)
        self._event(svc, "Normal", "CloudAuthChanged", f"the edge now lets in {len(exposure.cloud_auth_emails)} "
                    f"e-mail addresses and {len(exposure.cloud_auth_domains)} domains; the DNS name stays")
        log.info("cloud-auth lists changed", extra=_fields(key, socket["socket_id"]))

    def _change_protocol(self, key, svc, exposure, socket, fields):
        """The port's protocol (appProtocol or the annotation) changed: the edge is told in place. A pool's
        socket is shared, so a member that disagrees is warned and the socket is left as it is."""
        old, new = socket.get("upstream_protocol"), fields["upstream_protocol"]
        if exposure.pool:
            self._event(svc, "Warning", "PoolMismatch", f"pool {exposure.pool}'s socket's app speaks {old}, this "
                        f"Service's port {new}; every member must speak the same")
            return
        self.sockets.update_protocol(socket, fields)
        self._event(svc, "Normal", "UpstreamProtocolChanged", f"the edge now speaks {new} to this Service "
                    f"(was {old}); the DNS name stays")
        log.info("upstream protocol changed to %s", new, extra=_fields(key, socket["socket_id"]))

    def _not_ours(self, key, svc, socket):
        message = (f"{SOCKET_ID} points at socket {socket['socket_id']} ({socket.get('dnsname')}), which is not "
                   f"this Service's (it is named {socket.get('name')!r}; this Service's would be "
                   f"{self.ownership.name_for(*key)!r}): it is left alone, and this Service uses a socket of its own")
        log.warning(message, extra=_fields(key, socket["socket_id"]))
        self._event(svc, "Warning", "SocketNotOwned", message)

    def _protected_credentials(self, svc, exposure):
        """(username, password, version) for a protected Service; None if unprotected; False if unusable."""
        if not exposure.protected_secret:
            return None
        try:
            return protected.credentials(self.remote, self.kube, svc, exposure.protected_secret)
        except protected.Unusable as e:
            self._event(svc, "Warning", "InvalidAnnotation", str(e))
            self.queue.add(services.key_of(svc), 30.0)
            return False

    def _write_back(self, svc, record, valid):
        annotations = svc["metadata"].get("annotations") or {}
        wanted = {DNSNAME: record.dnsname, SOCKET_ID: record.socket_id}
        if valid:       # what a later typo falls back to, across restarts and failovers
            wanted[LAST_VALID] = json.dumps(services.options_of(svc), sort_keys=True, separators=(",", ":"))
        if record.served_by is not None:    # worked out by the last sweep (lib/sweep.py)
            wanted[SERVED_BY] = record.served_by
        changed = {k: v for k, v in wanted.items() if annotations.get(k) != v}
        if TUNNEL_ID in annotations:
            changed[TUNNEL_ID] = None       # one tunnel per replica now: the previous release's single id misleads
        if changed:
            self._patch(svc, annotations=changed)
        if record.exposure.load_balancer and _lb_hostname(svc) != record.dnsname:
            self._set_lb_hostname(svc, record.dnsname)

    def _say_serving(self, svc, record):
        """The leader tells the user when this cluster stops or starts taking traffic for the name."""
        if record.withdrawn:
            reason, message = "NoReadyEndpoints", (f"no ready endpoint: this cluster's tunnels take no traffic "
                                                   f"for {record.dnsname} until one is ready")
        else:
            reason, message = "Serving", f"a ready endpoint: this cluster's tunnels serve {record.dnsname} again"
        self._event(svc, "Warning" if record.withdrawn else "Normal", reason, message)
        self.fence.check()
        self.remote.call(f"condition {reason}", self.kube.set_condition, svc, SERVING_CONDITION,
                         not record.withdrawn, reason, message, guard=self.fence.check)

    def _say_hostnames(self, svc, verdict):
        """CONDITION of lib/customnames as `verdict` says, written only when the Service says otherwise."""
        current = services.find_condition(svc, HOSTNAMES_CONDITION)
        if verdict is None:
            if current is not None:
                self.fence.check()
                self.remote.call("hostnames condition cleared", self.kube.remove_condition, svc,
                                 HOSTNAMES_CONDITION, guard=self.fence.check)
            return
        ok, reason, message = verdict
        wanted = {"status": "True" if ok else "False", "reason": reason, "message": message[:1024]}
        if current is None or any(current.get(k) != v for k, v in wanted.items()):
            self.fence.check()
            self.remote.call(f"hostnames condition {ok} {reason} {message}", self.kube.set_condition, svc,
                             HOSTNAMES_CONDITION, ok, reason, message, guard=self.fence.check)

    def _patch(self, svc, **changes):
        self.fence.check()
        ident = "patch " + json.dumps(changes, sort_keys=True)
        return self.remote.call(ident, self.kube.patch_metadata, svc, guard=self.fence.check, **changes)

    def _set_lb_hostname(self, svc, hostname):
        self.fence.check()
        self.remote.call(f"status {hostname}", self.kube.set_load_balancer_hostname, svc, hostname,
                         guard=self.fence.check)

    # -- taking it away ----------------------------------------------------------

    def _teardown(self, key, svc, deleting):
        """Stop the child, delete the socket unless retained (or leave its pool), then let go of the Service."""
        annotations = svc["metadata"].get("annotations") or {}
        retain = services.retained(svc) and not deleting
        pool = (annotations.get(services.POOL) or "").strip()
        record = self.records.pop(key, None)
        self.serving.stop(key, record, drop_tunnel=retain)
        if self.dry_run:
            log.info("dry-run: would stop exposing%s", " (socket retained)" if retain else "", extra=_fields(key))
            return
        if pool and not retain:
            self.pools.leave(key, svc, pool, annotations.get(SOCKET_ID, ""))
        elif not retain:
            found = self.sockets.find(key, annotations.get(SOCKET_ID, ""))
            while found.socket is not None:     # this Service's socket, then any duplicate of it
                socket = found.socket
                self.sockets.delete(socket)
                self._event(svc, "Normal", "SocketDeleted", f"deleted socket {socket['socket_id']} "
                            f"({socket.get('dnsname')})")
                log.info("deleted socket %s", socket.get("dnsname"), extra=_fields(key, socket["socket_id"]))
                found = self.sockets.find(key)
        elif annotations.get(DNSNAME):
            self._event(svc, "Normal", "SocketRetained", f"stopped exposing; kept socket "
                        f"{annotations.get(SOCKET_ID)} and its name {annotations[DNSNAME]} ({services.RETAIN})")
        if not deleting and _lb_hostname(svc) and services.of_our_class(svc):
            self._set_lb_hostname(svc, None)    # only our class: another class's status is its controller's
        for condition in (SERVING_CONDITION, HOSTNAMES_CONDITION):
            if not deleting and services.has_condition(svc, condition):
                self.fence.check()
                self.remote.call(f"condition {condition} cleared", self.kube.remove_condition, svc, condition,
                                 guard=self.fence.check)
        drop = {} if retain else {k: None for k in OURS if k in annotations}
        if drop or FINALIZER in (svc["metadata"].get("finalizers") or []):
            self._patch(svc, annotations=drop, remove_finalizer=FINALIZER)
        self._forget(key)

    def _forget(self, key):
        self.serving.stop(key)
        self.moves.forget(key)
        record = self.records.pop(key, None)
        self.failures.pop(key, None)
        self.surprises.pop(key, None)
        self.secret_versions.pop(key, None)
        self.customnames.forget(key)
        if record:
            self.kube.forget_events(record.uid)

    # -- what the supervisor saw -------------------------------------------------

    def on_transition(self, t):
        """A connection (lib/serving.connection_key) came up, went down or failed: say so on its Service;
        down or failed, look at where its tunnels are placed again (lib/moves.py). A route's forward
        (lib/routecontroller.py) is the route controller's to report."""
        if self.routes is not None and self.routes.owns(t.key):
            self.routes.on_transition(t)
            return
        key = t.key[:2]
        svc = self.watcher.get(key)
        if t.kind == "up":
            log.info("tunnel up: %s", t.detail, extra=_fields(key))
            self._event(svc, "Normal", "TunnelUp", t.detail)
            return
        if t.kind == "down":
            log.warning("tunnel down, restarting: %s", t.detail, extra=_fields(key))
            self._event(svc, "Warning", "TunnelDown", f"{t.detail}; restarting")
        else:
            log.warning("tunnel failed: %s; retrying in %.1fs", t.detail, t.retry_in, extra=_fields(key))
            self._event(svc, "Warning", "TunnelFailed", t.detail)
        # The node may be dead and its tunnels moved, or the socket or tunnel gone: check the API again.
        self.moves.doubt(key, t.failures)

    def follow_nodes(self):
        """An edge node left the live set: look where every Service's tunnels are now (lib/moves.py)."""
        self.moves.follow(self.records)

    def tunnel_stale(self, key):
        message = ("the edge has no working tunnel for this name although its ssh session runs; asking for "
                   "the forward again")
        log.warning(message, extra=_fields(key))
        self._event(self.watcher.get(key), "Warning", "TunnelStale", message)

    # -- the periodic look at everything -----------------------------------------

    def resync(self):
        """The leader's sweep (lib/sweep.py), run with this controller's view."""
        self.remote.begin(SWEEP)
        self.sweep.run()

    # -- helpers -------------------------------------------------------------------

    def _retry_later(self, key, error):
        n = self.failures[key] = self.failures.get(key, 0) + 1
        delay = min(30.0, 2.0 ** (n - 1))
        if isinstance(error, mysocket.Unavailable) and error.retry_after:
            delay = max(delay, error.retry_after)
        if isinstance(error, (NotFound, Conflict)):
            delay = 0.2                         # changed or gone meanwhile: look again soon
        reason = error.__class__.__name__
        metrics.RECONCILE_ERRORS.labels(reason).inc()
        shown = error if isinstance(error, mysocket.ApiError) else kube.describe_error(error)
        log.warning("reconcile failed (%s: %s); retrying in %.1fs", reason, shown, delay, extra=_fields(key))
        svc = self.watcher.get(key)
        if isinstance(error, mysocket.ApiError) and not isinstance(error, mysocket.Unavailable):
            self._event(svc, "Warning", "MysocketAPIError", str(error))
        self.queue.add(key, delay)

    def _unexpected(self, key, error):
        """Log the traceback the first time this error shows up for this Service, and tell the user."""
        signature = f"{error.__class__.__name__}: {error}"[:200]
        if self.surprises.get(key) != signature:
            self.surprises[key] = signature
            log.exception("unexpected error in reconcile: %s; the other Services carry on", signature,
                          extra=_fields(key))
        self._event(self.watcher.get(key), "Warning", "ReconcileError", f"unexpected error, retrying with "
                    f"backoff (see the controller's log): {signature}")

    def _event(self, svc, kind, reason, message):
        if svc is not None and not self.dry_run:
            self.kube.event(svc, kind, reason, message)


def _lb_hostname(svc):
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ingress[0].get("hostname") if ingress else None


def _fields(key, socket_id=None):
    fields = {"namespace": key[0], "service": key[1]}
    if socket_id:
        fields["socket_id"] = socket_id
    return fields
