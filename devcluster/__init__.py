"""A local Kubernetes control plane (etcd + kube-apiserver), and a real node, for tests, demo and benchmarks.

    from devcluster import ControlPlane
    with ControlPlane() as cp:
        cp.kubectl("get", "--raw", "/readyz")

See controlplane.py (the processes and flags), netns.py (the private network
namespace the tests run in), standin.py (processes playing pods; import it as
devcluster.standin -- it is not re-exported here so that `python -m
devcluster.standin` runs without a double import), build.sh (how the binaries
are built and cached), and for a real node nodecluster.py (machine.py: its
namespaces; cgroups.py; node.py: containerd, kubelet, kube-proxy; images.py:
what it runs; workloads.py: yaml/ applied to it).
"""

from .binaries import ETCD_VERSION, K8S_VERSION, BinaryMissing
from .controlplane import ControlPlane, ControlPlaneError, KubectlError
from .netns import NotInPrivateNetns, add_cluster_ip, assert_private_netns

__all__ = [
    "ETCD_VERSION", "K8S_VERSION", "BinaryMissing", "ControlPlane", "ControlPlaneError",
    "KubectlError", "NotInPrivateNetns", "add_cluster_ip", "assert_private_netns",
]
