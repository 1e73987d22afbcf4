"""Following the edge when it moves a tunnel to another node.

An edge of several nodes places each tunnel on one of them (`tunnel_server`),
and when a node dies (silent for ~3 s) the edge moves its tunnels to live
nodes. Nothing tells the client: its ssh session to the dead node ends, and
every restart of it fails (refused, or no answer), with a backoff that grows
to a minute. Waiting for a backoff, or for the next resync, would leave the
name on one node for that long. So from the moment a Service's connection
goes down or fails, the controller looks at the account's tunnels again at
once and then every `every` seconds (half a second; one list shared by every
Service in doubt), for `window` seconds or until every connection of the Service is up:
a tunnel with a new `tunnel_server` is then forwarded to its new node at once
(the supervisor starts that node's session without waiting for anything).
After the window, a Service that still fails is looked at again every third
failure, as before: an edge that refuses a key costs a list per minute, not
two per second.

The same path serves the edge ending a session on purpose (it drops or moves
one of its forwards): the session restarts at once and its forwards are
looked at again, so a moved one follows its tunnel.

A node that freezes (a stopped VM, a partition) ends nothing: its sessions
look up until ssh's keepalives give up (15 s and more). So a thread reads the
edge's live nodes every second (`GET /health`, off the loop: `NodeWatch`), and
when one leaves the set, the loop looks at every Service's tunnels again, every
`every` seconds for `hold` seconds (the edge moves the tunnels of a node it
declared dead right after): one forward moved off a frozen node is taken out
of that node's session, and the session goes with its last forward.
"""

import logging
import threading
import time

log = logging.getLogger(__name__)


class Moves:
    def __init__(self, *, sockets, queue, nodes=None, clock=time.monotonic, window=15.0, every=0.5, hold=3.0):
        self.sockets = sockets
        self.nodes = nodes              # NodeWatch, or None: only failures say a node may be gone
        self.hold = hold
        self._live = None               # the live nodes as last followed
        self._hold_until = 0.0          # a node left: look again until then even where all looks up
        self.queue = queue
        self.clock = clock
        self.window = window            # covers the edge's ~3 s to declare a node dead, with room
        self.every = every
        self._since = {}                # key -> when its connection first went down or failed
        self._due = set()               # keys whose next reconcile reads their tunnels afresh
        self._listed_at = None          # when the last list for a look was asked for

    def doubt(self, key, failures):
        """A connection of key went down or failed (`failures` in a row): look again now, if in the window."""
        now = self.clock()
        since = self._since.setdefault(key, now)
        if now - since <= self.window or failures % 3 == 0:
            self._due.add(key)
            self.queue.add(key)

    def due(self, key):
        """True when this reconcile must read key's tunnels afresh (its record is dropped by the caller);
        the account's list is asked for again unless one was asked for less than `every` ago."""
        if key not in self._due:
            return False
        self._due.discard(key)
        now = self.clock()
        if self._listed_at is None or now - self._listed_at >= self.every * 0.9:
            self._listed_at = now
            self.sockets.invalidate()
        return True

    def settle(self, key, all_up):
        """After a reconcile: every connection up (`all_up()`) ends the doubt; otherwise look again in
        `every` seconds while in the window."""
        since = self._since.get(key)
        if since is None:
            return
        if all_up() and self.clock() >= self._hold_until:
            del self._since[key]
        elif self.clock() - since <= self.window:
            self._due.add(key)
            self.queue.add(key, self.every)

    def follow(self, keys):
        """Called by the loop on every turn (cheap unless a node left the edge's live set): then look at
        every Service in `keys` again."""
        live = self.nodes.live if self.nodes is not None else None
        if live is None:
            return
        gone, self._live = (self._live or live) - live, live
        if not gone:
            return
        log.info("edge node(s) %s no longer live: looking where their tunnels are now", ", ".join(sorted(gone)))
        now = self.clock()
        self._hold_until = now + self.hold
        for key in list(keys):
            self._since[key] = now
            self._due.add(key)
            self.queue.add(key)

    def forget(self, key):
        self._since.pop(key, None)
        self._due.discard(key)


class NodeWatch(threading.Thread):
    """The edge's live nodes (`api.live_nodes()`), read every `every` seconds off the loop; `live` is the
    last answer (None until one came, or when the edge does not say). Only the loop acts on it."""

    def __init__(self, api, every=1.0):
        super().__init__(name="edge-nodes", daemon=True)
        self.api = api
        self.every = every
        self.live = None
        self._stopping = threading.Event()

    def run(self):
        while not self._stopping.wait(self.every):
            try:
                self.live = self.api.live_nodes()
            except Exception as e:  # noqa: BLE001 -- unreachable or odd: nothing learned, the loop goes on
                log.debug("cannot read the edge's live nodes: %s", e)

    def stop(self):
        self._stopping.set()
