"""Gateways, HTTPRoutes and Ingresses: their sockets, tables, tunnels and statuses, reconciled as one picture.

One key (`ROUTES`) stands for all of them: any change to a Gateway API object, an Ingress, a backend
Service or its EndpointSlices queues it, and one reconcile translates everything again
(lib/gatewayapi.py, lib/ingresses.py: pure, cheap) and then does only what differs:

- the leader makes each wanted socket (an http socket with an address of its own, its name saying
  whose it is: lib/ownership.py; a tcp socket for each TCP listener of a Gateway, lib/tcproutes.py),
  gives it its table when the edge's digest differs, deletes the sockets of Gateways and Ingresses
  that are gone, and writes every status (GatewayClass, Gateway with the edge's addresses, HTTPRoute,
  TLSRoute and TCPRoute parents, Ingress load balancer). Every such write checks the leadership fence
  first, as the Service path does;
- every replica holds its own tunnel in each backend group (lib/routesockets.py): one per backend,
  or per ready endpoint of a headless Service, and runs its ssh forward while the backend has a ready
  endpoint (none: the forward stops, so the edge sends that share to the rule's other backends, or
  answers 500 when there is none).

Remote calls go through lib/remote.py like the Service path's: a slow call ends this reconcile with
Pending, and the key is queued again when it returns; the next run finds its outcome.
"""

import dataclasses
import hashlib
import logging
import time

from lib import conditions, customnames, gatewayapi, gateways, ingresses, mysocket, routekube, routesockets
from lib.apierrors import KubeError, NotFound
from lib.sshargs import TunnelSpec
from lib.watcher import ServiceWatcher

log = logging.getLogger(__name__)

ROUTES = ("", "(routes)")
FORWARD = "route"                   # supervisor keys: ("route", socket_id, backend, endpoint)
SECRET_TTL = 5.0
DRAIN = 5.0                         # seconds a tunnel the table stopped using keeps serving what it carries
WAIT_FOR_FORWARDS = 10.0             # seconds a new table waits for this replica's forwards to its new backends


class RouteController:
    def __init__(self, *, kube, sockets, supervisor, watchers, services, endpoints, queue, fence, cluster,
                 replica, lease=None, clock=None):
        self.kube = kube
        self.sockets = sockets
        self.remote = sockets.remote
        self.api = sockets.api
        self.supervisor = supervisor
        self.watchers = watchers            # kind name -> watcher with .cache (lib/routekube.KINDS)
        self.services = services            # the ServiceWatcher
        self.endpoints = endpoints          # the EndpointSliceWatcher
        self.queue = queue
        self.fence = fence
        self.cluster = cluster
        self.replica = replica
        self.lease = lease
        self.clock = clock or time.monotonic
        self.user_name = None
        self.backends = set()               # Service keys any route names (a change to one queues ROUTES)
        self.pools = set()                  # pools our Gateways and Ingresses serve (the Service sweep spares them)
        self._secrets = {}                  # (ns, name) -> (read at, Secret | None | UNREADABLE)
        self._waiting = {}                  # (socket_id, digest) -> when that table was first wanted
        self._names_asked = {}              # socket_id -> (custom hostnames, when) last given to the edge
        self._unused = {}                   # tunnel_id -> when the edge's table stopped using it

    # -- what belongs to this controller -----------------------------------------

    def owns(self, key):
        return key == ROUTES or (isinstance(key, tuple) and key and key[0] == FORWARD)

    def concerns(self, service_key):
        return tuple(service_key) in self.backends

    def take_lead(self):
        self._secrets.clear()
        self.queue.add(ROUTES)

    # -- the reconcile -----------------------------------------------------------------

    def reconcile(self):
        if not all(w.synced.is_set() for w in self.watchers.values()):
            self.queue.add(ROUTES, 0.5)         # a half-listed world would delete what it has not seen yet
            return
        objects = {kind: [o for o in w.cache.values()] for kind, w in self.watchers.items()}
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in self.services.cache.values()}
        labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in objects["Namespace"]}
        secrets = self._read_secrets(objects)
        world = gatewayapi.World(classes=objects["GatewayClass"], gateways=objects["Gateway"],
                                 http_routes=objects["HTTPRoute"], tls_routes=objects["TLSRoute"],
                                 tcp_routes=objects["TCPRoute"], grpc_routes=objects["GRPCRoute"],
                                 grants=objects["ReferenceGrant"], services=services, secrets=secrets,
                                 namespace_labels=labels)
        picture = gatewayapi.translate(world)
        plans = routesockets.ingress_plans(objects["Ingress"], objects["IngressClass"], services, secrets)
        wanted = routesockets.wanted(self.cluster, picture, objects["Gateway"], plans, objects["Ingress"])
        # Every Service a route or an Ingress names, found or not: one made after its route resolves it.
        self.backends = {(t.namespace, t.service) for w in wanted.values() for t in w.targets} | named_services(
            objects)
        self.pools = {w.pool for w in wanted.values() if w.pool}
        leading = self.fence.is_open()
        snapshot = self.sockets.snapshot()
        answers, forwards_kept, missing = {}, set(), False
        for key, want in sorted(wanted.items()):
            socket = self._socket_named(snapshot, want.socket_name)
            if socket is None and leading:
                socket = self._create_socket(want)
            if socket is None:
                missing = True
                continue
            # Make before break: this replica's tunnels for the table's backends first, then (the leader) the
            # table, once its own new forwards are up; tunnels the table no longer uses go only after that.
            forwards, kept = self._serve(socket, want, services)
            forwards_kept |= kept
            if leading and want.table is not None and socket.get("routes_digest") != want.digest:
                self._put_table(socket, want, kept)
            current = want.table is None or socket.get("routes_digest") == want.digest
            if leading and want.table is not None:
                self._put_hostnames(socket, want)
            forwards_kept |= self._drop_unused(socket, forwards, current)
            answers[key] = _answer(socket, want, current)
        for fkey in [k for k in self.supervisor.forwards if k[0] == FORWARD and k not in forwards_kept]:
            self.supervisor.remove(fkey)
        if leading:
            self._delete_leftovers(snapshot, wanted)
            self._write_statuses(objects, picture, plans, wanted, answers)
        if missing:
            self.sockets.invalidate()           # the leader made it after this replica's last look
            self.queue.add(ROUTES, 1.0)

    # -- sockets and tables (the leader) ---------------------------------------------------

    @staticmethod
    def _socket_named(snapshot, name):
        named = sorted((s for s in snapshot.values() if s.get("name") == name), key=lambda s: s["socket_id"])
        return named[0] if named else None

    def _create_socket(self, want):
        self.fence.check()
        socket = self.remote.call(f"create {want.socket_name}", self.api.create_socket,
                                  routesockets.socket_fields(want))
        socket.setdefault("tunnels", [])
        self.sockets.snapshot()             # read (listed if need be) as before, then the socket joins it
        self.sockets.keep(socket)
        log.info("created socket %s for %s %s/%s (address %s)", socket.get("dnsname"), want.kind, want.namespace,
                 want.name, socket.get("address") or "none")
        return socket

    def _put_table(self, socket, want, kept):
        """The table, once this replica's forwards for it are up (at most WAIT_FOR_FORWARDS s after it was
        first wanted: a backend whose forward never comes up must not hold every other change back)."""
        since = self._waiting.setdefault((socket["socket_id"], want.digest), self.clock())
        if not all(self.supervisor.is_up(k) for k in kept) and self.clock() - since < WAIT_FOR_FORWARDS:
            self.queue.add(ROUTES, 0.1)
            return
        self.fence.check()
        updated = self.remote.call(f"routes {socket['socket_id']} {want.digest}", self.api.put_routes,
                                   socket["socket_id"], want.table)
        socket.update({k: v for k, v in (updated or {}).items() if k != "tunnels"})
        self._waiting.pop((socket["socket_id"], want.digest), None)
        log.info("gave socket %s the table of %s %s/%s (%s)", socket.get("dnsname"), want.kind, want.namespace,
                 want.name, want.digest[:12])

    def _put_hostnames(self, socket, want):
        """The table's exact names as the socket's custom hostnames, so the edge serves them on its shared
        addresses too once they are proven (an edge without custom hostnames is left as it is). Unproven
        names are asked again every RECHECK seconds; the Gateway's Programmed message says what to create."""
        if "hostnames" not in socket:
            return
        names = routesockets.custom_names(want.table, socket.get("dnsname") or "")
        unproven = any(not h.get("verified") for h in socket["hostnames"])
        asked, when = self._names_asked.get(socket["socket_id"], (None, 0.0))
        recent = asked == names and self.clock() - when < customnames.RECHECK
        if recent or (names == customnames.names_on(socket) and not unproven):
            return
        self.fence.check()
        try:
            updated = self.remote.call(f"hostnames {socket['socket_id']} {','.join(names)}", self.api.put_hostnames,
                                       socket["socket_id"], names)
        except mysocket.ApiError as e:
            if e.status not in (400, 409):
                raise
            log.warning("the edge refused the hostnames of %s %s/%s: %s", want.kind, want.namespace, want.name,
                        e.message)
            self._names_asked[socket["socket_id"]] = (names, self.clock() + 10 * customnames.RECHECK)
            return
        self._names_asked[socket["socket_id"]] = (names, self.clock())
        socket.update({k: v for k, v in (updated or {}).items() if k != "tunnels"})
        if any(not h.get("verified") for h in socket.get("hostnames") or []):
            self.queue.add(ROUTES, customnames.RECHECK)

    def _delete_leftovers(self, snapshot, wanted):
        names = {w.socket_name for w in wanted.values()}
        for socket in list(snapshot.values()):
            owner = self.sockets.ownership.route_owner(socket)
            if owner is None or socket.get("name") in names:
                continue
            self.fence.check()
            self.remote.call(f"delete {socket['socket_id']}", self.api.delete_socket, socket["socket_id"])
            snapshot.pop(socket["socket_id"], None)
            log.info("deleted socket %s: its %s %s/%s is gone", socket.get("dnsname"), *owner)

    # -- this replica's tunnels (every replica) -----------------------------------------------

    def _serve(self, socket, want, services):
        forwards = []
        for target in sorted(want.targets, key=lambda t: t.key):
            service = services.get((target.namespace, target.service))
            slices = self.endpoints.headless_slices((target.namespace, target.service))
            found = routesockets.forward_targets(target, service, slices)
            if found and not found[0].endpoint and self.endpoints.ready((target.namespace, target.service)) == 0:
                found = []              # a ClusterIP with no ready endpoint behind it: no forward, the edge skips it
            forwards += found
        missing, _ = routesockets.tunnel_changes(socket, forwards, self.cluster, self.replica)
        if missing and self.lease is not None and not self.lease.renewed.is_set():
            missing = []                # the leader removes tunnels whose replica has no Lease: ours first
        for forward in missing:
            tag = routesockets.TunnelTag(self.cluster, self.replica, forward.backend, forward.endpoint).tag
            tunnel = self.remote.call(f"tunnel {socket['socket_id']} {tag}", self.api.create_tunnel,
                                      socket["socket_id"], tag, forward.backend)
            tunnel["local_port"] = int(tunnel["local_port"])
            socket.setdefault("tunnels", []).append(tunnel)
        kept = set()
        for forward in forwards:
            tunnel = routesockets.own_tunnel(socket, forward, self.cluster, self.replica)
            if tunnel is None or not self.user_name:
                continue
            key = (FORWARD, _forward_id(socket["socket_id"], forward), forward.backend, forward.endpoint)
            self.supervisor.ensure(key, TunnelSpec(int(tunnel["local_port"]), forward.host, forward.port,
                                                   self.user_name, tunnel.get("tunnel_server") or ""))
            kept.add(key)
        return forwards, kept

    def _drop_unused(self, socket, forwards, table_current):
        """This replica's tunnels no forward uses: deleted once the edge has the table that no longer names
        them; until then they keep serving (their forwards keep running). Returns the forwards kept so."""
        _, extra = routesockets.tunnel_changes(socket, forwards, self.cluster, self.replica)
        still = set()
        for tunnel in extra:
            tag = routesockets.TunnelTag.parse(tunnel.get("owner"))
            key = next((k for k in self.supervisor.forwards if k[0] == FORWARD and k[2] == tag.backend
                        and k[3] == tag.endpoint and k[1].startswith(socket["socket_id"][:8])), None)
            if not table_current:
                if key:
                    still.add(key)
                self.queue.add(ROUTES, 1.0)
                self.sockets.invalidate()       # a follower learns the leader's new table from a fresh list
                continue
            unused_since = self._unused.setdefault(tunnel["tunnel_id"], self.clock())
            if self.clock() - unused_since < DRAIN:
                if key:
                    still.add(key)          # requests under way on it finish; no new one comes its way
                self.queue.add(ROUTES, DRAIN)
                continue
            self._unused.pop(tunnel["tunnel_id"], None)
            self.remote.call(f"delete tunnel {tunnel['tunnel_id']}", self.api.delete_tunnel, socket["socket_id"],
                             tunnel["tunnel_id"])
            socket["tunnels"] = [t for t in socket.get("tunnels") or [] if t["tunnel_id"] != tunnel["tunnel_id"]]
        dropping = {t["tunnel_id"] for t in extra}
        for tunnel in socket.get("tunnels") or []:
            if tunnel["tunnel_id"] not in dropping:
                self._unused.pop(tunnel["tunnel_id"], None)      # used again: a later drop drains afresh
        return still

    def on_transition(self, t):
        if t.kind == "up":
            log.info("route tunnel up: %s %s", t.key[2], t.detail)
            if self._waiting:
                self.queue.add(ROUTES)          # a table may have waited for this forward
        elif t.kind == "down":
            log.warning("route tunnel down, restarting: %s %s", t.key[2], t.detail)
        else:
            log.warning("route tunnel failed: %s %s; retrying in %.1fs", t.key[2], t.detail, t.retry_in)
            if t.failures % 3 == 0:
                self.sockets.invalidate()
                self.queue.add(ROUTES)

    # -- statuses (the leader) ---------------------------------------------------------------

    def _write_statuses(self, objects, picture, plans, wanted, answers):
        for klass in objects["GatewayClass"]:
            name = klass["metadata"]["name"]
            if name in picture.classes:
                self._status("GatewayClass", klass, gatewayapi.class_status(klass, picture.classes[name]))
        for gw in objects["Gateway"]:
            key = (gw["metadata"]["namespace"], gw["metadata"]["name"])
            plan = picture.gateways.get(key)
            if plan is None:
                continue
            answer = answers.get(("gateway", *key), gatewayapi.EdgeAnswer())
            answer = dataclasses.replace(answer, tcp={lis.name: answers.get(
                ("gateway-tcp", key[0], routesockets.tcp_name(key[1], lis.name)), gatewayapi.EdgeAnswer())
                for lis in plan.tcp})
            self._status("Gateway", gw, gatewayapi.gateway_status(gw, plan, answer))
        for verdict in picture.routes.values():
            self._status("HTTPRoute", verdict.route, gatewayapi.route_status(verdict))
        for kind, verdicts in (("TLSRoute", picture.tls_routes), ("TCPRoute", picture.tcp_routes),
                               ("GRPCRoute", picture.grpc_routes)):
            for verdict in verdicts.values():
                self._status(kind, verdict.route, gatewayapi.route_status(verdict))
        by_key = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in objects["Ingress"]}
        for plan in plans:
            answer = answers.get(("ingress", plan.namespace, plan.name))
            ingress = by_key.get((plan.namespace, plan.name))
            if answer is None or ingress is None or not answer.programmed:
                continue
            status = ingresses.load_balancer_status(answer.addresses)
            if (ingress.get("status") or {}).get("loadBalancer") != status["loadBalancer"]:
                self._status("Ingress", ingress, status)

    def _status(self, kind, obj, status):
        if conditions.same_status(status, obj.get("status") or {}):
            return
        self.fence.check()
        meta = obj["metadata"]
        ident = f"status {kind} {meta.get('namespace', '')}/{meta['name']} {hash(repr(status))}"
        self.remote.call(ident, routekube.write_status, self.kube.rest, routekube.KINDS[kind], obj, status)

    # -- certificates -----------------------------------------------------------------------

    def _read_secrets(self, objects):
        """The Secrets Gateway listeners and Ingress tls entries name, read at most every SECRET_TTL s."""
        wanted = set()
        for gw in objects["Gateway"]:
            ns = gw["metadata"]["namespace"]
            for listener in (gw.get("spec") or {}).get("listeners") or []:
                for ref in ((listener.get("tls") or {}).get("certificateRefs")) or []:
                    if (ref.get("group") or "", ref.get("kind") or "Secret") == ("", "Secret"):
                        wanted.add((ref.get("namespace") or ns, ref.get("name", "")))
        for ing in objects["Ingress"]:
            for tls in (ing.get("spec") or {}).get("tls") or []:
                if tls.get("secretName"):
                    wanted.add((ing["metadata"]["namespace"], tls["secretName"]))
        now, out = self.clock(), {}
        for key in sorted(wanted):
            read_at, value = self._secrets.get(key, (None, None))
            if read_at is None or now - read_at > SECRET_TTL:
                value = self.remote.call(f"secret {key[0]}/{key[1]}", routekube.secret, self.kube.rest, *key)
                self._secrets[key] = (now, value)
            if value is routekube.UNREADABLE or value == routekube.UNREADABLE:
                out[key] = gateways.UNREADABLE
            elif value is not None:
                out[key] = value
        return out


def named_services(objects):
    """(namespace, name) of every Service a backendRef of an HTTPRoute, TLSRoute, TCPRoute or GRPCRoute, or an
    Ingress backend, names (whether it exists or may be used: the verdicts say that)."""
    out = set()
    for kind in ("HTTPRoute", "TLSRoute", "TCPRoute", "GRPCRoute"):
        for route in objects.get(kind) or []:
            ns = route["metadata"].get("namespace", "")
            for rule in (route.get("spec") or {}).get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    if (ref.get("group") or "", ref.get("kind") or "Service") == ("", "Service"):
                        out.add((ref.get("namespace") or ns, ref.get("name", "")))
    for ing in objects.get("Ingress") or []:
        ns, spec = ing["metadata"].get("namespace", ""), ing.get("spec") or {}
        backends = [spec.get("defaultBackend") or {}] + [p.get("backend") or {} for r in spec.get("rules") or []
                                                         for p in (r.get("http") or {}).get("paths") or []]
        out |= {(ns, b["service"]["name"]) for b in backends if (b.get("service") or {}).get("name")}
    return out


def _answer(socket, want, current):
    """What the edge said about one wanted socket: a table taken (or not), or a TCP listener's port."""
    if want.socket_type == "tcp":
        port = next(iter(socket.get("socket_tcp_ports") or []), None)
        return gatewayapi.EdgeAnswer(bool(port), f"served on the edge at {socket.get('dnsname')}:{port}" if port
                                     else "the edge gave the socket no port", routesockets.addresses(socket))
    return gatewayapi.EdgeAnswer(current, _names_said(socket) if current else "the edge has not taken the table yet",
                                 routesockets.addresses(socket))


def _names_said(socket):
    """What the Programmed condition says of the socket's custom hostnames ("" when it has none)."""
    said = [f"{h['hostname']}: {h.get('message', '')}" for h in socket.get("hostnames") or []]
    return "custom hostnames: " + "; ".join(said) if said else ""


def _forward_id(socket_id, forward):
    """A short id, unique per socket and forward (the supervisor names its log after it)."""
    return f"{socket_id[:8]}-{hashlib.sha256((forward.backend + '#' + forward.endpoint).encode()).hexdigest()[:10]}"


def serving_pools(controller):
    """Pools that Gateways or Ingresses of this cluster serve (the Service sweep must not leave them)."""
    return set(controller.pools) if controller is not None else set()


class _KindWatcher(ServiceWatcher):
    """List and watch one kind for the route controller: every change queues ROUTES.

    A kind the cluster does not serve (the Gateway API's CRDs are not installed: 404) is an empty
    list, said once, and looked for again every ABSENT_RECHECK s, so installing the CRDs later just
    works and a cluster without them gets no warning every few seconds."""

    ABSENT_RECHECK = 30.0

    def keep(self, obj):
        return obj, True                    # every object of these kinds is read whole by the reconcile

    def queued_key(self, obj):
        return ROUTES

    def run(self):
        said = False
        while not self._stopping.is_set():
            try:
                self.kube.list(self.KIND)
            except NotFound:
                if not said:
                    log.info("%ss are not served by this cluster (are the Gateway API CRDs installed?); "
                             "looking again every %gs", self.WHAT, self.ABSENT_RECHECK)
                    said = True
                with self._lock:
                    self.cache = {}
                self.synced.set()
                self.queue.add(ROUTES)
                self._stopping.wait(self.ABSENT_RECHECK)
                continue
            except (KubeError, ValueError):
                pass                        # the watch's own loop says so and backs off
            super().run()
            return


def watchers(kube, queue):
    """One list-and-watch per kind the route controller reads (lib/routekube.KINDS), cluster-wide."""
    out = {}
    for what, kind in routekube.KINDS.items():
        cls = type(f"{what}Watcher", (_KindWatcher,), {"KIND": kind, "WHAT": what})
        out[what] = cls(kube, queue)
    return out
