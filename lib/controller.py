"""Reconcile one Service: make the socket, the tunnel and the ssh child match what it asks for.

`reconcile(key)` is idempotent: run twice, the second run changes nothing and
makes no remote call. What the controller created lives on the Service
(annotations `mysocket.io/socket-id`, `tunnel-id`, `dnsname`, and the
finalizer `mysocket.io/cleanup`), so a restarted controller adopts instead of
creating again. In memory it keeps only a `Record` per exposed Service: a
cache of the remote truth, dropped whenever that truth is in doubt (a tunnel
that keeps failing, a resync), which is what lets its own annotation writes
come back through the watch as a no-op instead of a loop.

Whose a socket is, `lib.ownership` decides, from the socket's own name; the
ids on a Service only save a lookup. A Service whose recorded id leads to a
socket that is not its own (a copy, a restore, an edit) gets a socket of its
own and a Warning Event, and the other socket is never touched. Every remote
change and every write to a Service first checks the leadership fence, so a
leader that lost the apiserver stops changing things before a standby starts.

Errors are per Service: a transient API error requeues that Service with its
own backoff, a user's mistake becomes a Warning Event on it, and nothing one
Service does stops the others.
"""

import dataclasses
import json
import logging
import time

from kubernetes.client.exceptions import ApiException

from lib import inheritance, kube, metrics, mysocket, services
from lib.leader import Fence, Fenced
from lib.remote import Pending
from lib.services import DNSNAME, FINALIZER, LAST_VALID, SOCKET_ID, TUNNEL_ID, InvalidAnnotation
from lib.sockets import differences, socket_fields
from lib.sshargs import TunnelSpec

log = logging.getLogger(__name__)
OURS = (DNSNAME, SOCKET_ID, TUNNEL_ID, LAST_VALID)
SWEEP = ("", "(sweep)")             # the key the sweep's own remote calls are made under


@dataclasses.dataclass
class Record:
    uid: str
    exposure: services.Exposure
    socket_id: str
    tunnel_id: str
    dnsname: str
    local_port: int


class Controller:
    def __init__(self, *, kube, sockets, supervisor, watcher, queue, user_name, home_namespace="mysocket",
                 fence=None, dry_run=False):
        self.kube = kube
        self.sockets = sockets
        self.remote = sockets.remote
        self.ownership = sockets.ownership
        self.supervisor = supervisor
        self.watcher = watcher
        self.queue = queue
        self.user_name = user_name
        self.home_namespace = home_namespace    # where the inheritance ConfigMap lives (lib/inheritance.py)
        self.fence = fence or Fence()
        self.dry_run = dry_run
        self.records = {}
        self.failures = {}      # key -> consecutive failed reconciles, for backoff
        self.surprises = {}     # key -> the last unexpected error's signature, to log its traceback once
        self._inherited_loaded = False

    # -- leadership --------------------------------------------------------------

    def take_lead(self):
        """Just became the (confirmed) leader: forget every cached view of remote state and look again."""
        self.sockets.invalidate()
        self.remote.forget()
        self.records.clear()                    # the children keep running: ensure() of the same spec is a no-op
        if not self._inherited_loaded:
            self.fence.check()
            self.ownership.inherited = inheritance.load_or_take(
                self.kube, self.home_namespace, self.ownership.cluster,
                [self.watcher.get(k) for k in self.watcher.keys()], self.sockets.snapshot())
            self._inherited_loaded = True
        for key in set(self.watcher.keys()) | set(self.supervisor.children):
            self.queue.add(key)

    def stand_down(self):
        """Another replica leads: stop this one's children and forget, keeping the cache warm for a take-over."""
        log.warning("not the leader (any more): stopping all ssh children")
        self.supervisor.stop_all()
        self.records.clear()
        self.remote.forget()

    # -- one Service -------------------------------------------------------------

    def reconcile(self, key):
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
        record = self.records.get(key)
        if svc is None or (record and record.uid != svc["metadata"]["uid"]):
            self._forget(key)               # deleted (its finalizer, if any, was handled before)
            if svc is None:
                return
        meta = svc["metadata"]
        has_finalizer = FINALIZER in (meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            if has_finalizer:
                self._teardown(key, svc, deleting=True)
            else:
                self._forget(key)
            return
        try:
            exposure, valid = services.desired_exposure(svc), True
        except InvalidAnnotation as e:
            # A typo must not take a working public name down: serve the last valid options, resolved
            # against the Service as it is now; or nothing, when those no longer fit it.
            self._event(svc, "Warning", "InvalidAnnotation", str(e))
            log.warning("invalid annotation: %s", e, extra=_fields(key))
            exposure, valid = (services.last_valid_exposure(svc) if e.keeps_tunnel else None), False
            if exposure is None:
                self._stop_forwarding(key, svc, e)
                return
        if exposure is None:
            annotated = any((meta.get("annotations") or {}).get(a) for a in OURS)
            if has_finalizer or (annotated and not services.retained(svc)):
                self._teardown(key, svc, deleting=False)
            else:
                self._forget(key)
            return
        self._expose(key, svc, exposure, valid)

    def _stop_forwarding(self, key, svc, error):
        """Nothing valid to forward to: stop the child, keep the socket and the name, say so once."""
        if key in self.supervisor.children:
            dnsname = (svc["metadata"].get("annotations") or {}).get(DNSNAME, "")
            self._event(svc, "Warning", "TunnelStopped", f"not forwarding {dnsname} any more ({error.reason}); "
                        "the socket and its name are kept")
            log.warning("stopped forwarding: %s", error, extra=_fields(key))
        self.supervisor.remove(key)
        self.records.pop(key, None)

    def _expose(self, key, svc, exposure, valid=True):
        record = self.records.get(key)
        if record is None or record.exposure != exposure:
            if self.dry_run:
                log.info("dry-run: would expose %s:%d as a %s socket", exposure.cluster_ip, exposure.port,
                         exposure.socket_type, extra=_fields(key))
                self.records[key] = Record(svc["metadata"]["uid"], exposure, "", "", "", 0)
                return
            if FINALIZER not in (svc["metadata"].get("finalizers") or []):
                # Before anything remote exists, so a deletion can never skip the clean-up.
                svc = self._patch(svc, add_finalizer=FINALIZER)
            record = self._ensure_remote(key, svc, exposure)
            if record is None:
                return
            self.records[key] = record
        if self.dry_run:
            return
        # The child first: the public name works ~10 ms sooner, and the write-back cannot fail it.
        self.supervisor.ensure(key, TunnelSpec(record.local_port, exposure.cluster_ip, exposure.port,
                                               self.user_name))
        self._write_back(svc, record, valid)

    def _ensure_remote(self, key, svc, exposure):
        annotations = svc["metadata"].get("annotations") or {}
        protected = self._protected_credentials(svc, exposure)
        if protected is False:
            return None
        fields = socket_fields(exposure, self.ownership.name_for(*key), protected[:2] if protected else None)
        found = self.sockets.find(key, annotations.get(SOCKET_ID, ""))
        if found.foreign is not None:
            self._not_ours(key, svc, found.foreign)
        socket = found.socket
        if socket is not None and differences(socket, fields):
            changed = ", ".join(differences(socket, fields))
            self._event(svc, "Normal", "SocketReplaced", f"socket options changed ({changed}); the API cannot "
                        f"update a socket, so it is replaced and the DNS name {socket.get('dnsname')} changes")
            self.sockets.delete(socket)
            socket = None
        if socket is None:
            socket = self.sockets.create(fields)
            self._event(svc, "Normal", "SocketCreated", f"created socket {socket['socket_id']}: "
                        f"{socket.get('dnsname')}")
            log.info("created socket %s", socket.get("dnsname"), extra=_fields(key, socket["socket_id"]))
        elif found.how != "id":
            self._event(svc, "Normal", "SocketAdopted", f"adopted socket {socket['socket_id']} "
                        f"({socket.get('dnsname')}) found by its {found.how} name")
            log.info("adopted socket %s by %s name", socket.get("dnsname"), found.how,
                     extra=_fields(key, socket["socket_id"]))
        tunnels = socket.get("tunnels") or []
        tunnel = next((t for t in tunnels if t["tunnel_id"] == annotations.get(TUNNEL_ID)), None)
        tunnel = tunnel or (tunnels[0] if tunnels else self.sockets.add_tunnel(socket))
        return Record(svc["metadata"]["uid"], exposure, socket["socket_id"], tunnel["tunnel_id"],
                      socket.get("dnsname", ""), int(tunnel["local_port"]))

    def _not_ours(self, key, svc, socket):
        message = (f"{SOCKET_ID} points at socket {socket['socket_id']} ({socket.get('dnsname')}), which is not "
                   f"this Service's (it is named {socket.get('name')!r}; this Service's would be "
                   f"{self.ownership.name_for(*key)!r}): it is left alone, and this Service uses a socket of its own")
        log.warning(message, extra=_fields(key, socket["socket_id"]))
        self._event(svc, "Warning", "SocketNotOwned", message)

    def _protected_credentials(self, svc, exposure):
        """(username, password, version) from the named Secret; None if unprotected; False if unusable.

        The Secret must opt in (label mysocket.io/protected-secret: "true", set by whoever may write
        Secrets): otherwise anyone who may annotate a Service could have any Secret of its namespace
        with username/password keys (a database's, say) sent to the edge, whose 401 would then answer
        guesses about it. Unusable is a Warning and a look again in 30 s; never an unprotected socket.
        """
        if not exposure.protected_secret:
            return None
        ns, name = svc["metadata"]["namespace"], exposure.protected_secret
        try:
            secret = self.remote.call(f"secret {name}", self.kube.secret, ns, name)
        except ApiException as e:
            if e.status != 403:
                raise
            secret, problem = None, ("cannot be read by mysocketd: grant it `get` on Secrets in this namespace "
                                     "(yaml/optional/protected-secret-rbac.yaml)")
        else:
            data = (secret or {}).get("data") or {}
            problem = "not found" if secret is None else (
                f'does not opt in: label it {services.PROTECTED_SECRET}="true" to let mysocketd use it'
                if (secret["labels"].get(services.PROTECTED_SECRET) or "").lower() != "true" else
                "needs the keys username and password" if not (data.get("username") and data.get("password"))
                else "")
        if problem:
            self._event(svc, "Warning", "InvalidAnnotation", f"{services.PROTECTED_SECRET}: Secret {name!r} in "
                        f"namespace {ns} {problem}")
            self.queue.add((ns, svc["metadata"]["name"]), 30.0)
            return False
        return secret["data"]["username"], secret["data"]["password"], secret["version"]

    def _write_back(self, svc, record, valid):
        annotations = svc["metadata"].get("annotations") or {}
        wanted = {DNSNAME: record.dnsname, SOCKET_ID: record.socket_id, TUNNEL_ID: record.tunnel_id}
        if valid:       # what a later typo falls back to, across restarts and failovers
            wanted[LAST_VALID] = json.dumps(services.options_of(svc), sort_keys=True, separators=(",", ":"))
        changed = {k: v for k, v in wanted.items() if annotations.get(k) != v}
        if changed:
            self._patch(svc, annotations=changed)
        if record.exposure.load_balancer and _lb_hostname(svc) != record.dnsname:
            self._set_lb_hostname(svc, record.dnsname)

    def _patch(self, svc, **changes):
        self.fence.check()
        ident = "patch " + json.dumps(changes, sort_keys=True)
        return self.remote.call(ident, self.kube.patch_metadata, svc, **changes)

    def _set_lb_hostname(self, svc, hostname):
        self.fence.check()
        self.remote.call(f"status {hostname}", self.kube.set_load_balancer_hostname, svc, hostname)

    # -- taking it away ----------------------------------------------------------

    def _teardown(self, key, svc, deleting):
        """Stop the child, delete the socket unless retained, then let go of the Service."""
        annotations = svc["metadata"].get("annotations") or {}
        retain = services.retained(svc) and not deleting
        self.supervisor.remove(key)
        if self.dry_run:
            log.info("dry-run: would stop exposing%s", " (socket retained)" if retain else "", extra=_fields(key))
            self.records.pop(key, None)
            return
        if not retain:
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
        drop = {} if retain else {k: None for k in OURS if k in annotations}
        if drop or FINALIZER in (svc["metadata"].get("finalizers") or []):
            self._patch(svc, annotations=drop, remove_finalizer=FINALIZER)
        self._forget(key)

    def _forget(self, key):
        self.supervisor.remove(key)
        record = self.records.pop(key, None)
        self.failures.pop(key, None)
        self.surprises.pop(key, None)
        if record:
            self.kube.forget_events(record.uid)

    # -- what the supervisor saw -------------------------------------------------

    def on_transition(self, t):
        svc = self.watcher.get(t.key)
        if t.kind == "up":
            log.info("tunnel up: %s", t.detail, extra=_fields(t.key))
            self._event(svc, "Normal", "TunnelUp", t.detail)
        elif t.kind == "down":
            log.warning("tunnel down, restarting: %s", t.detail, extra=_fields(t.key))
            self._event(svc, "Warning", "TunnelDown", f"{t.detail}; restarting")
        else:
            log.warning("tunnel failed: %s; retrying in %.1fs", t.detail, t.retry_in, extra=_fields(t.key))
            self._event(svc, "Warning", "TunnelFailed", t.detail)
            if t.failures % 3 == 0:
                # Keeps failing: perhaps the socket or tunnel is gone. Check the API again.
                self.records.pop(t.key, None)
                self.sockets.invalidate()
                self.queue.add(t.key)

    def tunnel_stale(self, key):
        message = "the edge has no working tunnel for this name although ssh runs; replacing the ssh child"
        log.warning(message, extra=_fields(key))
        self._event(self.watcher.get(key), "Warning", "TunnelStale", message)

    # -- the periodic look at everything -----------------------------------------

    def resync(self):
        """Re-read the account's sockets, requeue Services whose socket vanished, delete this cluster's leftovers."""
        self.remote.begin(SWEEP)
        self.sockets.invalidate()
        snapshot = self.sockets.snapshot()
        for key, record in list(self.records.items()):
            socket = snapshot.get(record.socket_id)
            if socket is None or all(t["tunnel_id"] != record.tunnel_id for t in socket.get("tunnels") or []):
                log.warning("socket or tunnel disappeared from the API; recreating", extra=_fields(key))
                del self.records[key]
                self.queue.add(key)
        for socket, owner in self.sockets.owned():
            if self._leftover(socket, owner):
                log.info("%s leftover socket %s (%s)", "dry-run: would delete" if self.dry_run else "deleting",
                         socket.get("name"), socket.get("dnsname"), extra=_fields(owner.key, socket["socket_id"]))
                if not self.dry_run:
                    self.sockets.delete(socket)

    def _leftover(self, socket, owner):
        """Provably unwanted: its Service is gone, opted out, or uses another socket of this cluster."""
        scope = self.kube.namespace
        if scope and owner.namespace != scope:
            return False                        # another controller's namespace
        svc = self.watcher.get(owner.key)
        if svc is None:
            return True
        if services.enabled_is_invalid(svc):
            return False                        # in doubt until the user says "true" or "false"
        if owner.how == "original":
            return False                        # the original controller's: only when no such Service exists
        if not services.opted_in(svc):
            return not services.retained(svc)
        record = self.records.get(owner.key)
        return record is not None and bool(record.socket_id) and record.socket_id != socket["socket_id"]

    # -- helpers -------------------------------------------------------------------

    def _retry_later(self, key, error):
        n = self.failures[key] = self.failures.get(key, 0) + 1
        delay = min(30.0, 2.0 ** (n - 1))
        if isinstance(error, mysocket.Unavailable) and error.retry_after:
            delay = max(delay, error.retry_after)
        if isinstance(error, ApiException) and error.status in (404, 409):
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
