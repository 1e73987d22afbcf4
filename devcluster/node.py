"""One real node: containerd, kubelet and kube-proxy in the node's namespaces (devcluster.machine).

Why it is shaped this way:
- Everything a node keeps lives where the machine put tmpfs (/run, /var/lib,
  /var/log) or in the work dir: containerd's root and state, the kubelet's
  root dir, pod logs, CNI state. Config files are written here, complete,
  rather than relying on defaults that read host files (/etc/containerd,
  /etc/cni/net.d, /opt/cni/bin).
- Facts of this machine kind, each handled once, here: the sandbox's OOM score
  of -998 needs CAP_SYS_RESOURCE, which the VM does not give
  (restrict_oom_score_adj); cgroups are v1 hybrid (failCgroupV1: false,
  cgroupfs driver); no registry is reachable (images are imported from the
  archive devcluster.images built, the sandbox image is one of them, and
  image GC is off so nothing imported is ever deleted); AppArmor is absent.
- kube-proxy never touches conntrack sysctls (they are kernel-wide or
  read-only in a network namespace); every pod leaves the node masqueraded
  behind the node's address, so the outer namespace needs no route to pods.
- The kubelet authenticates the apiserver by the cluster CA (the apiserver's
  client certificate) and lets it in; nobody else can reach the node's
  network namespace.
"""

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import binary, containerd_binary
from .controlplane import ControlPlane
from .images import NodeImages
from .machine import NodeMachine

log = logging.getLogger(__name__)

POD_CIDR = "10.244.0.0/16"
NODE_POD_SUBNET = "10.244.0.0/24"
CNI_BIN_DIR = "/usr/lib/cni"            # Debian's containernetworking-plugins
RUNC = "/usr/sbin/runc"                 # Debian's runc
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


class NodeError(RuntimeError):
    """The node did not come up (the message carries the log that says why)."""


# What the node needs from Debian, by path, and the package that brings it.
PREREQUISITES = {RUNC: "runc", f"{CNI_BIN_DIR}/bridge": "containernetworking-plugins",
                 "/usr/sbin/iptables": "iptables", "/usr/bin/nsenter": "util-linux"}


def check_prerequisites() -> None:
    """One line naming what to install, before anything is started."""
    missing = sorted({package for path, package in PREREQUISITES.items() if not os.access(path, os.X_OK)})
    if missing:
        raise NodeError(f"the local node needs {', '.join(missing)}: apt-get install {' '.join(missing)} "
                        "(.ci/run installs everything the tests need)")


@dataclass(frozen=True)
class NodeTimeline:
    """Seconds since the node's start() began, for the report and `make bench`."""

    containerd_ready: float = 0.0
    images_imported: float = 0.0
    kubelet_started: float = 0.0
    node_ready: float = 0.0


class Node:
    """containerd + kubelet + kube-proxy on `machine`, registered with `control_plane`."""

    def __init__(self, machine: NodeMachine, control_plane: ControlPlane, images: NodeImages,
                 extra_archives: tuple = ()):
        self.machine = machine
        self.cp = control_plane
        self.images = images
        self.extra_archives = tuple(extra_archives)     # more image archives, e.g. the conformance suite's
        self.name = machine.name
        self.workdir = machine.workdir
        self.timeline = NodeTimeline()
        self._children = []

    def start(self, ready_timeout: float = 120.0) -> "Node":
        started = time.monotonic()
        (self.workdir / "cni").mkdir(exist_ok=True)
        (self.workdir / "cni" / "10-devcluster.conflist").write_text(json.dumps(_cni_config(), indent=2))
        self._start("containerd", [str(containerd_binary("containerd")), "--config", str(self._containerd_config())])
        self._wait(lambda: self.machine.run(str(containerd_binary("ctr")), "--address", CONTAINERD_SOCKET,
                                            "version", check=False).returncode == 0, "containerd", 30)
        containerd_ready = time.monotonic() - started
        self.import_images()
        imported = time.monotonic() - started
        self._start("kubelet", [str(binary("kubelet")), f"--config={self._kubelet_config()}",
                                f"--kubeconfig={self._kubeconfig(f'system:node:{self.name}')}",
                                f"--node-ip={self.machine.uplink.node_ip}", f"--hostname-override={self.name}",
                                "--v=1"])
        kubelet_started = time.monotonic() - started
        self._start("kube-proxy", [str(binary("kube-proxy")), f"--config={self._kube_proxy_config()}", "--v=1"])
        self._wait(self.ready, f"node {self.name} to be Ready and schedulable", ready_timeout)
        self.timeline = NodeTimeline(containerd_ready, imported, kubelet_started, time.monotonic() - started)
        log.info("node %s ready: %s", self.name, self.timeline)
        return self

    def stop(self) -> None:
        """The kubelet and kube-proxy get SIGTERM; the machine then kills whatever is left
        (containerd, shims, containers) by PID through the node's cgroup."""
        for child in reversed(self._children):
            if child.name in ("kubelet", "kube-proxy"):
                child.stop(timeout=5)

    def reap(self) -> None:
        """Reap our children once the machine has killed them."""
        for child in self._children:
            child.stop(timeout=1)

    def ready(self) -> bool:
        node = json.loads(self.cp.kubectl("get", "node", self.name, "-o", "json", check=False).stdout or "{}")
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        taints = [t["key"] for t in node.get("spec", {}).get("taints", [])]
        return conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

    def import_images(self) -> None:
        for archive in (self.images.archive, *self.extra_archives):
            result = self.machine.run(str(containerd_binary("ctr")), "--address", CONTAINERD_SOCKET, "-n", "k8s.io",
                                      "images", "import", "--local", str(archive), check=False, timeout=300)
            if result.returncode != 0:
                raise NodeError(f"importing {archive} into containerd failed: {result.stderr.strip()}")

    def log_tails(self, lines: int = 20) -> str:
        return "\n".join(f"--- {c.log_path}\n{c.log_tail(lines)}" for c in self._children)

    # --- processes ------------------------------------------------------------

    def _start(self, name, argv):
        child = self.machine.child(name, argv)
        self._children.append(child)
        child.start()

    def _wait(self, predicate, what, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            dead = [c.name for c in self._children if not c.running()]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not after {timeout:.0f}s"
                raise NodeError(f"waiting for {what}: {why}\n{self.log_tails()}")
            time.sleep(0.1)

    # --- configuration ------------------------------------------------------------

    def _kubeconfig(self, user):
        return self.cp.component_kubeconfig(user)

    def _containerd_config(self) -> Path:
        path = self.workdir / "containerd.toml"
        path.write_text(CONTAINERD_CONFIG.format(
            pause=self.images.pause, cni_conf_dir=self.workdir / "cni", cni_bin_dir=CNI_BIN_DIR, runc=RUNC,
            socket=CONTAINERD_SOCKET, shim=containerd_binary("containerd-shim-runc-v2")))
        return path

    def _kubelet_config(self) -> Path:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": self.machine.cgroup.root,
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "address": self.machine.uplink.node_ip, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.cp.pki.ca_cert)}},
            "authorization": {"mode": "AlwaysAllow"},
            "resolvConf": str(self._resolv_conf()), "clusterDomain": "cluster.local",
            "failSwapOn": False, "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False, "registerNode": True, "rotateCertificates": False,
            "protectKernelDefaults": False, "shutdownGracePeriod": "0s",
        }
        path = self.workdir / "kubelet.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def _resolv_conf(self) -> Path:
        # No cluster DNS here: pods get no nameserver rather than the host's.
        path = self.workdir / "resolv.conf"
        path.write_text("# the devcluster node has no DNS\n")
        return path

    def _kube_proxy_config(self) -> Path:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self._kubeconfig("system:kube-proxy"))},
            "hostnameOverride": self.name, "mode": "iptables", "clusterCIDR": POD_CIDR,
            "nodePortAddresses": ["primary"],
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        path = self.workdir / "kube-proxy.json"
        path.write_text(json.dumps(config, indent=2))
        return path


def _cni_config() -> dict:
    return {"cniVersion": "1.0.0", "name": "devcluster", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": NODE_POD_SUBNET}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]}


# Only what differs from containerd's defaults, plus the paths, so nothing is read from the host.
CONTAINERD_CONFIG = """\
version = 4
root = "/var/lib/containerd"
state = "/run/containerd"
temp = "/run/containerd/tmp"
imports = []
# opt would create /opt/containerd on the host; NRI and the tracing processors are not needed.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  cdi_spec_dirs = ["/run/cdi"]
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{shim}"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{cni_conf_dir}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
