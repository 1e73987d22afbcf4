"""A node leaves nothing on the host, two nodes at once never meet, and a killed run is cleaned up.

What "the host" means here: the paths kubelet, containerd and the CNI plugins
use by default, the kernel-wide sysctls the kubelet would set, the cgroup
hierarchies (not namespaced), and the links of the test's network namespace.
Each test also looks at the node while it runs, so that "nothing afterwards"
cannot pass just because nothing was ever there.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import cgroups, netns, workloads
from devcluster.binaries import REPO_ROOT
from devcluster.machine import KERNEL_TUNABLES
from devcluster.nodecluster import NodeCluster
from devcluster.stack import wait_for

pytestmark = pytest.mark.timeout(300)

HOST_PATHS = ["/var/lib/kubelet", "/var/lib/cni", "/var/lib/containerd", "/run/containerd", "/run/netns",
              "/var/run/netns", "/var/log/pods", "/var/log/containers", "/opt/containerd", "/opt/cni",
              "/etc/containerd", "/etc/cni/net.d", "/run/cni", "/var/run/nri", "/etc/kubernetes"]
SYSCTLS = [*KERNEL_TUNABLES, "kernel/pid_max", "vm/max_map_count", "fs/inotify/max_user_watches",
           "fs/inotify/max_user_instances", "kernel/keys/maxkeys", "kernel/keys/maxbytes"]


def host_state():
    paths = {p: sorted(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p) for p in HOST_PATHS}
    sysctls = {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS if Path("/proc/sys", k).exists()}
    links = sorted(link["ifname"] for link in netns._ip_json("link", "show"))
    return {"paths": paths, "sysctls": sysctls, "cgroups": cgroups.own_trees(), "links": links}


def web_pod(cluster, name="web"):
    """One pod of the demo image with a readiness probe, Ready: the kubelet, CNI and runc all worked."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
                      "metadata": {"labels": {"app": name}},
                      "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                          "name": "web", "image": cluster.images.demo_app,
                          "command": ["python3", "-m", "http.server", "8000"],
                          "readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1}}]}}}}
    cluster.cp.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    workloads.rollout(cluster.cp, "default", name, 120)
    [pod] = workloads.pods(cluster.cp, "default", f"app={name}")
    return pod


def pod_cgroup_exists(cluster, pod):
    """Whether the kubelet made the pod's cgroup (pod<uid>) under this node's root, in any hierarchy."""
    name = f"pod{pod['metadata']['uid']}"
    return any(any(True for _ in (h / cluster.machine.cgroup.root.lstrip("/")).rglob(name))
               for h in cgroups.hierarchies())


def test_a_node_leaves_nothing_on_the_host(tmp_path):
    before = host_state()
    with NodeCluster(workdir=tmp_path / "cluster") as cluster:
        pod = web_pod(cluster)
        during = host_state()
        assert pod_cgroup_exists(cluster, pod)                      # kubepods really live in our tree
        assert during["cgroups"] == [cluster.machine.cgroup.name]
        assert cluster.machine.uplink.outer_link in during["links"]
        assert cluster.machine.path("/var/lib/kubelet/pods").is_dir()       # in the node's mount namespace
        assert cluster.machine.path("/run/containerd/containerd.sock").exists()
        assert during["paths"] == before["paths"] and during["sysctls"] == before["sysctls"]
    assert host_state() == before


def test_two_nodes_at_once_do_not_collide(tmp_path):
    with NodeCluster(workdir=tmp_path / "a") as a, NodeCluster(workdir=tmp_path / "b") as b:
        pod_a, pod_b = web_pod(a), web_pod(b)
        assert a.machine.cgroup.root != b.machine.cgroup.root
        assert a.uplink != b.uplink
        assert sorted(cgroups.own_trees()) == sorted([a.machine.cgroup.name, b.machine.cgroup.name])
        assert pod_cgroup_exists(a, pod_a) and pod_cgroup_exists(b, pod_b)
        assert not pod_cgroup_exists(a, pod_b) and not pod_cgroup_exists(b, pod_a)
        a.stop()
        # b's pod is untouched by a's teardown: still Ready, still probed by b's kubelet.
        [still] = workloads.pods(b.cp, "default", "app=web")
        assert still["metadata"]["uid"] == pod_b["metadata"]["uid"] and workloads.ready(still)
        b.cp.kubectl("exec", "-n", "default", still["metadata"]["name"], "--", "true")
        assert cgroups.own_trees() == [b.machine.cgroup.name]
    assert cgroups.own_trees() == []


KILLED_RUN = """
import sys, time
from devcluster.nodecluster import NodeCluster
cluster = NodeCluster(workdir=sys.argv[1]).start()
print("UP", cluster.machine.cgroup.name, cluster.machine.uplink.outer_link, flush=True)
time.sleep(600)
"""


def test_the_cgroups_of_a_killed_run_are_removed(tmp_path):
    """A run SIGKILLed with its PID namespace leaves cgroup directories only; the next start
    (or make test's wrapper) removes them because nobody holds their lock any more."""
    argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--",
            sys.executable, "-c", KILLED_RUN, str(tmp_path / "killed")]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        line = proc.stdout.readline()           # bounded by the test timeout
        assert line.startswith("UP "), line
        _, tree, link = line.split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    dirs = [h / cgroups.PARENT / tree for h in cgroups.hierarchies()]
    try:
        assert all(d.is_dir() for d in dirs)
        # Its processes die with its PID namespace (the kernel kills them once its init is gone),
        # and the veth with the node's network namespace; the directories stay.
        wait_for("the killed node's processes to die", lambda: cgroups.NodeCgroup(tree).pids() == set(), timeout=30)
        wait_for("the killed node's veth to go", lambda: link not in host_state()["links"], timeout=30)
        assert all(d.is_dir() for d in dirs)
        assert tree in cgroups.remove_stale(min_age=0)
        assert not any(d.exists() for d in dirs)
    finally:
        cgroups.remove_stale(min_age=0)


def test_a_missing_prerequisite_is_named_in_one_line(monkeypatch, tmp_path):
    from devcluster import node
    monkeypatch.setattr(node, "PREREQUISITES", {**node.PREREQUISITES, str(tmp_path / "runc"): "runc"})
    with pytest.raises(node.NodeError) as failure:
        NodeCluster(workdir=tmp_path / "cluster").start()
    assert str(failure.value) == ("the local node needs runc: apt-get install runc "
                                  "(.ci/run installs everything the tests need)")
    assert not (tmp_path / "cluster").exists() and cgroups.own_trees() == []
