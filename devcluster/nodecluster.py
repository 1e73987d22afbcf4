"""A control plane with one real node: pods run, Services route, namespaces finish deleting.

    from devcluster.nodecluster import NodeCluster
    with NodeCluster() as cluster:          # inside `make test`'s private namespaces
        cluster.cp.kubectl("apply", "-f", "yaml/demo-deploy.yaml")
        cluster.uplink                      # where the apiserver listens, and where the edge should

Why it is shaped this way:
- The order follows the dependencies: the node's namespaces first (the
  apiserver binds the node's uplink address), then etcd, the apiserver,
  kube-controller-manager and kube-scheduler, then containerd (with the images
  imported), the kubelet and kube-proxy; start() returns once the node is Ready
  and schedulable. Any failure stops what was started and raises with the log
  tails that explain it.
- Stopping never depends on the node's cooperation: the kubelet and
  kube-proxy get SIGTERM, every other process in the node's cgroup
  (containerd, shims, containers) is killed by PID, the control plane stops,
  then the namespace holder: the cgroups are removed and the namespaces (and
  the veth) vanish with their last process; then the work dir goes. The
  control plane stops while the veth still exists: its address goes with the
  veth, and an apiserver then waits in vain for its connections to close.
  stop() runs from the context manager, a weakref finalizer or at interpreter
  exit, whichever comes first.
- The rest of the suite keeps its fast stand-ins (devcluster.standin) on a
  node-less control plane; this is for the few tests that need the real path
  (the manifest's Deployment, kubelet probes, EndpointSlices, namespace deletion).
"""

import logging
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Optional

from .controlplane import ControlPlane, NodeAccess
from .images import NodeImages
from .machine import NodeMachine
from .names import random_suffix
from .netns import assert_private_netns
from .node import Node, check_prerequisites

log = logging.getLogger(__name__)


class NodeCluster:
    def __init__(self, workdir: Optional[Path] = None, images: Optional[NodeImages] = None,
                 keep_workdir: bool = False, extra_archives: tuple = ()):
        self._requested_workdir = Path(workdir) if workdir else None
        self._remove_workdir = workdir is None and not keep_workdir
        self.images = images
        self.extra_archives = tuple(extra_archives)     # imported after the node images (the conformance suite's)
        self.workdir = None
        self.machine = self.cp = self.node = None
        self.timeline = {}
        self._finalizer = None

    @property
    def uplink(self) -> str:
        """The address the apiserver listens on, and where anything pods must reach should listen."""
        return self.machine.uplink.outer_ip

    @property
    def node_name(self) -> str:
        return self.machine.name

    def start(self) -> "NodeCluster":
        assert_private_netns()
        check_prerequisites()
        if self._finalizer is not None:
            raise RuntimeError("a NodeCluster can be started once; make a new one")
        self.images = self.images or NodeImages.load()
        self.workdir = self._requested_workdir or Path(tempfile.mkdtemp(prefix="devcluster-node-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        parts = []
        self._finalizer = weakref.finalize(self, _stop, parts, self.workdir if self._remove_workdir else None)
        started = time.monotonic()
        try:
            self.machine = NodeMachine(f"node-{random_suffix(8)}", self.workdir / "node")
            parts.append(self.machine)
            self.machine.start()
            self.timeline["namespaces"] = time.monotonic() - started
            self.cp = ControlPlane(self.workdir / "controlplane",
                                   node=NodeAccess(self.machine.uplink.outer_ip, self.machine.name))
            parts.append(self.cp)
            self.cp.start()
            self.timeline["control_plane"] = time.monotonic() - started
            self.node = Node(self.machine, self.cp, self.images, self.extra_archives)
            parts.insert(0, self.node)
            self.node.start()
        except BaseException:
            self.stop()
            raise
        t = self.node.timeline
        offset = self.timeline["control_plane"]
        self.timeline.update(containerd=offset + t.containerd_ready, images=offset + t.images_imported,
                             kubelet=offset + t.kubelet_started, node_ready=offset + t.node_ready)
        log.info("node cluster up: %s", {k: round(v, 2) for k, v in self.timeline.items()})
        return self

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "NodeCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tails(self, lines: int = 20) -> str:
        tails = []
        if self.cp is not None and self.cp.workdir is not None:
            tails.append(self.cp.log_tails(lines))
        if self.node is not None:
            tails.append(self.node.log_tails(lines))
        return "\n".join(tails)


def _stop(parts, workdir) -> None:
    """The kubelet and kube-proxy (SIGTERM), the node's other processes (SIGKILL by PID), the
    control plane, the namespace holder and the cgroups. Each step runs even if one before failed."""
    by_kind = {type(part): part for part in parts}
    node, machine, cp = by_kind.get(Node), by_kind.get(NodeMachine), by_kind.get(ControlPlane)
    steps = [node and node.stop, machine and machine.kill_processes, node and node.reap,
             cp and cp.stop, machine and machine.stop]
    for step in filter(None, steps):
        try:
            step()
        except Exception:  # noqa: BLE001 - keep stopping the others
            log.exception("could not %s", step.__qualname__)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
