"""The node's own "machine": network, mount and UTS namespaces nested in the test's, one veth to it.

Why it is shaped this way:
- A node brings a bridge, veths, iptables rules that kube-proxy owns for its
  whole network namespace, and pod network namespaces. In the test's namespace
  they would meet the stand-in pods' ClusterIPs on lo and a second node's
  rules, so each node gets a network namespace of its own, nested in the
  private one `make test` made, with one veth to it. The apiserver and the
  edge listen on the outer end (the node's uplink: the control plane and "the
  internet" as a VM would see them); pods leave through the node's default
  route, masqueraded; nothing routes further, because the outer namespace has
  no route off the machine (devcluster.netns checks that).
- Its mount namespace is private and gets fresh tmpfs on /run, /var/lib and
  /var/log, where containerd, the kubelet, the CNI plugins and the pod logs
  keep their state (some of those paths are compiled in): it all vanishes with
  the namespace, even after a SIGKILL. /sys is mounted again from inside the
  node's network namespace, so /sys/class/net shows the node's links (the CNI
  bridge plugin writes there); the cgroup hierarchies are moved back on top.
- The kubelet sets a few kernel-wide sysctls. Each gets a stand-in file bound
  over it here, holding the value the kubelet wants, so the host's stay as
  they are.
- A `sleep` in the node's cgroup holds the namespaces; node processes are
  started through nsenter into them (run() and argv()), also in that cgroup.
"""

import functools
import ipaddress
import json
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import cgroups
from .processes import Child

log = logging.getLogger(__name__)

UPLINK_NET = ipaddress.ip_network("172.31.0.0/16")   # one /30 per node, outside the Service and pod ranges
# What the kubelet writes in /proc/sys when it differs (pkg/kubelet/cm setupKernelTunables).
KERNEL_TUNABLES = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                   "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                   "kernel/keys/root_maxbytes": "25000000"}


class MachineError(RuntimeError):
    """The node's namespaces could not be set up."""


@dataclass(frozen=True)
class Uplink:
    outer_ip: str      # in the test's namespace: the apiserver and the edge listen here
    node_ip: str       # the node's InternalIP, eth0 in its namespace
    outer_link: str


class NodeMachine:
    """start() makes the namespaces, the veth and the mounts; stop() removes every trace."""

    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.workdir = Path(workdir)
        self.cgroup = cgroups.NodeCgroup.for_node(name)
        self.uplink = None
        self._holder = None

    @property
    def pid(self) -> int:
        return self._holder.pid

    def start(self) -> "NodeMachine":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cgroup.create()
        self._holder = self.child("node-namespaces", ["sleep", "infinity"], enter=False, argv_prefix=[
            "unshare", "--net", "--mount", "--uts", "--propagation", "private", "--"])
        self._holder.start()
        self._wait_exec("sleep")
        self._mounts()
        self.uplink = self._network()
        self.run("hostname", self.name)
        return self

    def kill_processes(self) -> int:
        """Kill every process of the node (containerd, shims, containers) but the namespace
        holder, by PID through the node's cgroup. The uplink stays, so the connections of
        the dying processes close properly: an apiserver waits for its clients' connections
        to close, and an address that vanished with the veth would keep it waiting."""
        if self._holder is None or not self._holder.running():
            return 0
        return self.cgroup.kill_all(spare={self._holder.pid})

    def stop(self) -> None:
        """Kill every process of the node (its cgroup), then remove the cgroups. The namespaces,
        their mounts and the veth go with the last process."""
        try:
            self.cgroup.destroy()
        finally:
            if self._holder is not None:
                self._holder.stop()

    # --- entering -----------------------------------------------------------

    def argv(self, *argv) -> list[str]:
        """argv run inside the node's namespaces (nsenter execs it: the pid is the program's)."""
        return ["nsenter", f"--target={self.pid}", "--mount", "--net", "--uts", "--", *argv]

    def run(self, *argv, check=True, timeout=30, input=None) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout,
                                input=input, preexec_fn=self._join_cgroup())
        if check and result.returncode != 0:
            raise MachineError(f"{' '.join(argv)} in node {self.name} failed: {result.stderr.strip()}")
        return result

    def child(self, name, argv, enter=True, argv_prefix=()) -> Child:
        """A long-running node process: in the node's cgroup, logging to the work dir."""
        full = [*argv_prefix, *(self.argv(*argv) if enter else argv)]
        return Child(name, full, self.workdir / f"{name}.log", preexec_fn=self._join_cgroup())

    def path(self, inside: str) -> Path:
        """A path of the node's mount namespace, from outside (through /proc/<pid>/root)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def _join_cgroup(self):
        return functools.partial(cgroups.join, self.cgroup.node_procs_files())

    # --- setup --------------------------------------------------------------

    def _wait_exec(self, comm: str, timeout: float = 10.0) -> None:
        """Wait until unshare has made the namespaces private and exec'ed the holder: mounts made
        before that could still propagate."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._holder.running():
                raise MachineError(f"unshare exited: {self._holder.log_tail()}")
            try:
                if Path(f"/proc/{self.pid}/comm").read_text().strip() == comm:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise MachineError(f"the namespaces of node {self.name} did not come up in {timeout:.0f}s")

    def _mounts(self) -> None:
        self.run("mount", "-t", "tmpfs", "-o", "mode=0755", "node-run", "/run")
        self.run("mkdir", "/run/.cgroup")
        self.run("mount", "--rbind", "/sys/fs/cgroup", "/run/.cgroup")
        self.run("mount", "-t", "sysfs", "node-sysfs", "/sys")
        self.run("mount", "--move", "/run/.cgroup", "/sys/fs/cgroup")
        self.run("rmdir", "/run/.cgroup")
        for target in ("/var/lib", "/var/log"):
            self.run("mount", "-t", "tmpfs", "-o", "mode=0755", "node-state", target)
        standins = self.path("/run/devcluster-sysctl")
        standins.mkdir()
        for key, value in KERNEL_TUNABLES.items():
            (standins / key.replace("/", ".")).write_text(value + "\n")
            self.run("mount", "--bind", f"/run/devcluster-sysctl/{key.replace('/', '.')}", f"/proc/sys/{key}")

    def _network(self) -> Uplink:
        outer_ip, node_ip = _free_uplink()
        link = f"dcn-{self.name[-10:]}"[:15]
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", str(self.pid))
        _ip("address", "add", f"{outer_ip}/30", "dev", link)
        _ip("link", "set", link, "up")
        for argv in (("link", "set", "lo", "up"), ("address", "add", f"{node_ip}/30", "dev", "eth0"),
                     ("link", "set", "eth0", "up"), ("route", "add", "default", "via", outer_ip)):
            self.run("ip", *argv)
        return Uplink(outer_ip=outer_ip, node_ip=node_ip, outer_link=link)


def _free_uplink() -> tuple[str, str]:
    """The first /30 of UPLINK_NET that no address of this namespace is in."""
    used = set()
    for link in json.loads(_ip("-json", "address").stdout):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                used.add(ipaddress.ip_network(f"{a['local']}/30", strict=False))
    for subnet in UPLINK_NET.subnets(new_prefix=30):
        if subnet not in used:
            hosts = list(subnet.hosts())
            return str(hosts[0]), str(hosts[1])
    raise MachineError(f"no free /30 left in {UPLINK_NET}")


def _ip(*argv) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise MachineError(f"ip {' '.join(argv)} failed: {result.stderr.strip()}")
    return result
