"""ServiceWatcher against the real apiserver: list, watch, and every way a watch ends.

The watcher runs as in mysocketd: a real lib.kube.Kube over a kubeconfig (the
manifest's ServiceAccount, so its RBAC is enough for list and watch), in its
own thread. RecordingKube only writes down what the real calls did (how many
lists, how each watch ended, which bookmarks came); every answer is the
apiserver's. Where the path to the apiserver must misbehave, the kubeconfig
points at a devcluster.relay.Relay that the test cuts or stalls.

resourceVersions are opaque to clients; these tests compare them as integers
only to say "later than", which holds for this etcd-backed apiserver.
"""

import json
import logging
import threading

import pytest
from kubernetes import config as kube_config

from devcluster.names import dns_label
from devcluster.relay import Relay
from devcluster.stack import wait_for
from lib.kube import Kube
from lib.watcher import ServiceWatcher

ASKED = {"mysocket.io/enabled": "false"}    # a Service that concerns mysocketd (lib/services.concerns_us)


class RecordingKube(Kube):
    """The real Kube; it also notes each list, each watch's end and each bookmark."""

    def __init__(self, api, namespace):
        super().__init__(api, namespace)
        self.lists = 0
        self.watch_from = []        # the resourceVersion each watch started from
        self.watch_ends = []        # per watch call: "server" (the server ended it) or the exception's class
        self.bookmarks = []         # resourceVersions of the bookmarks seen

    def list(self, what):
        self.lists += 1
        return super().list(what)

    def watch(self, what, resource_version, **kwargs):
        self.watch_from.append(resource_version)
        try:
            for kind, obj in super().watch(what, resource_version, **kwargs):
                if kind == "BOOKMARK":
                    self.bookmarks.append(obj["metadata"]["resourceVersion"])
                yield kind, obj
        except Exception as e:
            self.watch_ends.append(e.__class__.__name__)
            raise
        self.watch_ends.append("server")


class Keys:
    """The work queue's add(), recorded in order."""

    def __init__(self):
        self.added = []
        self._lock = threading.Lock()

    def add(self, key, delay=0.0):
        with self._lock:
            self.added.append(key)

    def since(self, n):
        with self._lock:
            return self.added[n:]


@pytest.fixture
def start_watcher(controller_kubeconfig, namespace):
    """Factory: a running ServiceWatcher on the test's namespace (kubeconfig: the ServiceAccount's or given)."""
    started = []

    def start(kubeconfig=controller_kubeconfig, **kwargs):
        api = kube_config.new_client_from_config(config_file=str(kubeconfig))
        kube, keys = RecordingKube(api, namespace), Keys()
        kwargs.setdefault("backoff_cap", 0.5)
        kwargs.setdefault("watch_timeout", 2)              # so that stop() takes effect within ~2 s
        kwargs.setdefault("idle_timeout", 5)
        watcher = ServiceWatcher(kube, keys, **kwargs)
        started.append((watcher, api))
        watcher.start()
        wait_for("the first list", watcher.synced.is_set)
        return watcher, kube, keys

    yield start
    for watcher, api in started:
        watcher.stop()
        watcher.join(timeout=15)
        api.close()


@pytest.fixture
def relayed_kubeconfig(controller_kubeconfig, control_plane, tmp_path):
    """(kubeconfig through a relay, the relay): the ServiceAccount's kubeconfig, its server behind a Relay."""
    server = control_plane.server.rsplit(":", 1)
    with Relay("127.0.0.1", int(server[1])) as relay:
        config = json.loads(open(controller_kubeconfig).read())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
        path = tmp_path / "relayed.kubeconfig"
        path.write_text(json.dumps(config))
        yield path, relay


def rv_of(svc):
    return int(svc["metadata"]["resourceVersion"])


def test_lists_then_watches_adds_changes_and_deletions(cluster, start_watcher):
    cluster.service("before", annotations=ASKED)
    watcher, kube, keys = start_watcher()
    before, after = (cluster.ns, "before"), (cluster.ns, "after")
    assert watcher.keys() == [before] and keys.since(0) == [before]

    cluster.service("after", annotations=ASKED)
    wait_for("the new Service in the cache", lambda: watcher.get(after))
    cluster.annotate("after", **{"example.com/note": "x"})
    wait_for("the change in the cache",
             lambda: watcher.get(after)["metadata"]["annotations"].get("example.com/note") == "x")
    queued = len(keys.since(0))
    cluster.delete("after")
    wait_for("the deletion", lambda: watcher.get(after) is None)
    assert keys.since(queued) == [after]                    # the deletion was queued too
    assert kube.lists == 1                                  # one list, then the watch carried everything


def test_services_that_concern_nobody_are_kept_small_and_never_queued(cluster, start_watcher):
    """In a large cluster most Services are nobody's business here: the cache keeps their name and uid
    (the sweep must know they exist) and what a route's backend needs (type, ClusterIP, ports), and a
    change to one queues nothing; once asked for, it is queued."""
    cluster.service("plain", annotations={"example.com/big": "x" * 2000})
    watcher, kube, keys = start_watcher()
    plain = (cluster.ns, "plain")
    kept = watcher.get(plain)
    assert set(kept) == {"metadata", "spec"} and "annotations" not in kept["metadata"]
    assert set(kept["spec"]) == {"type", "clusterIP", "ports"} and kept["spec"]["ports"][0]["port"] > 0
    assert watcher.keys() == [] and keys.since(0) == []
    cluster.annotate("plain", **{"example.com/note": "y"})
    cluster.annotate("plain", **{"mysocket.io/enabled": "true"})
    wait_for("the asked-for Service queued", lambda: keys.since(0) == [plain])
    assert watcher.get(plain)["metadata"]["annotations"]["mysocket.io/enabled"] == "true"
    assert watcher.keys() == [plain]


def test_a_change_to_a_routes_backend_is_queued_though_it_concerns_nobody_else(cluster, start_watcher):
    """The route controller reads a backend Service it does not own (watcher.also_read): a change to one
    must reach it, or a route keeps forwarding to a port the Service no longer has."""
    cluster.service("backend")
    watcher, kube, keys = start_watcher()
    backend = (cluster.ns, "backend")
    watcher.also_read = lambda key: key == backend
    cluster.annotate("backend", **{"example.com/note": "y"})
    wait_for("the route's backend queued", lambda: backend in keys.since(0))
    assert watcher.keys() == []

def test_a_broken_stream_resumes_from_the_newest_resource_version(cluster, relayed_kubeconfig, start_watcher):
    """Not from where that stream began: that would deliver again every change the broken stream
    already delivered (a reconcile each), or a needless relist once that version is too old."""
    path, relay = relayed_kubeconfig
    watcher, kube, keys = start_watcher(path, watch_timeout=60, idle_timeout=60)
    created = cluster.service("changed", annotations=ASKED)
    wait_for("the change seen", lambda: watcher.get((cluster.ns, "changed")))
    assert len(kube.watch_from) == 1                        # still the first stream
    queued = len(keys.since(0))
    relay.cut()
    relay.heal()
    wait_for("a second watch", lambda: len(kube.watch_from) >= 2 and watcher.watching)
    assert int(kube.watch_from[-1]) >= rv_of(created)
    assert keys.since(queued) == [] and kube.lists == 1
    watcher.stop()
    relay.cut()                                             # end the 60 s stream now, not at teardown


def test_bookmarks_advance_the_resource_version_without_events(cluster, control_plane, start_watcher, request):
    """A bookmark comes when the apiserver's resourceVersion moved past the watch's; with a
    short server-side timeout the apiserver sends one 2 s before ending the stream."""
    watcher, kube, keys = start_watcher(watch_timeout=4)
    listed_at = int(watcher.resource_version)
    other = dns_label(f"o-{request.node.name}")
    control_plane.kubectl("create", "namespace", other)
    try:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "elsewhere", "namespace": other},
                "spec": {"ports": [{"port": 80}]}}
        created = json.loads(control_plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(body)).stdout)
        assert rv_of(created) > listed_at
        wait_for("a bookmark at or past the other namespace's write",
                 lambda: int(watcher.resource_version) >= rv_of(created), timeout=30)
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)
    assert kube.bookmarks and max(int(rv) for rv in kube.bookmarks) >= rv_of(created)
    assert kube.lists == 1 and keys.since(0) == [] and watcher.keys() == []


def test_a_silent_stream_is_cut_by_the_idle_timeout_and_resumed(cluster, relayed_kubeconfig, start_watcher, caplog):
    """The server ends each stream after 2 s, before the 5 s idle timeout, so a healthy watch
    never idles out and keeps its one connection; stall() freezes that connection. Silence is
    routine (no bookmark comes while nothing changes), so it is no warning either."""
    caplog.set_level(logging.INFO, logger="lib.watcher")
    path, relay = relayed_kubeconfig
    watcher, kube, keys = start_watcher(path, watch_timeout=2, idle_timeout=5)
    wait_for("a watch that the server ended", lambda: "server" in kube.watch_ends)
    accepted = relay.accepted
    assert relay.stall() >= 1
    cluster.service("late", annotations=ASKED)
    wait_for("the Service created behind the stall", lambda: watcher.get((cluster.ns, "late")), timeout=30)
    assert "Silent" in kube.watch_ends                      # the client gave up on the silent stream
    assert relay.accepted > accepted                        # and came back on a new connection
    assert kube.lists == 1                                  # resumed from its resourceVersion, no relist
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_410_gone_relists_and_reports_what_was_deleted_meanwhile(cluster, control_plane, relayed_kubeconfig,
                                                                 start_watcher):
    """While this watcher is cut off, a Service is deleted and the apiserver restarts: its watch
    cache starts after the watcher's resourceVersion, so the resumed watch is answered 410 Gone."""
    path, relay = relayed_kubeconfig
    cluster.service("stays", annotations=ASKED)
    cluster.service("goes", annotations=ASKED)
    watcher, kube, keys = start_watcher(path)
    wait_for("the watch open", lambda: watcher.watching)
    relay.cut()
    wait_for("the watch broken", lambda: not watcher.watching)
    cluster.delete("goes")
    cluster.service("arrives", annotations=ASKED)
    control_plane.stop_apiserver()
    control_plane.start_apiserver()
    queued = len(keys.since(0))
    relay.heal()
    goes, arrives, stays = ((cluster.ns, name) for name in ("goes", "arrives", "stays"))
    wait_for("the deletion and the addition seen", lambda: watcher.get(goes) is None and watcher.get(arrives),
             timeout=30)
    assert "Gone" in kube.watch_ends and kube.lists == 2   # seen by a relist, not by a resumed watch
    assert sorted(watcher.keys()) == [arrives, stays]
    assert goes in keys.since(queued)                       # reported, so the controller cleans up after it
    assert arrives in keys.since(queued)
