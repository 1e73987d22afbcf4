"""A local Kubernetes control plane (etcd + kube-apiserver) for tests, demo and benchmarks.

    from devcluster import ControlPlane
    with ControlPlane() as cp:
        cp.kubectl("get", "--raw", "/readyz")

See controlplane.py (the processes and flags), netns.py (the private network
namespace the tests run in), standin.py (processes playing pods; import it as
devcluster.standin -- it is not re-exported here so that `python -m
devcluster.standin` runs without a double import) and build.sh (how the
binaries are built and cached).
"""

from .binaries import ETCD_VERSION, K8S_VERSION, BinaryMissing
from .controlplane import ControlPlane, ControlPlaneError, KubectlError
from .netns import NotInPrivateNetns, add_cluster_ip, assert_private_netns

__all__ = [
    "ETCD_VERSION", "K8S_VERSION", "BinaryMissing", "ControlPlane", "ControlPlaneError",
    "KubectlError", "NotInPrivateNetns", "add_cluster_ip", "assert_private_netns",
]
