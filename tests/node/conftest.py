"""Fixtures for the tests on a real node: one NodeCluster, edge and mysocketd install per module.

The rest of the suite keeps its fast stand-ins on the session's node-less
control plane; these few tests need what only a node does (the manifest's
Deployment as pods, the kubelet's probes, kube-proxy, EndpointSlices,
namespaces that finish deleting). mysocketd is installed the way the demo and
the README do it: its namespace labelled for Pod Security `restricted`, the
Secret created from files, then yaml/mysocketd.yaml with the image and the
edge set (devcluster.workloads).
"""

import pytest
from node_stack import ROLLOUT_TIMEOUT, Installed

from devcluster import workloads
from devcluster.names import dns_label
from devcluster.nodecluster import NodeCluster
from devcluster.stack import wait_for

@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory):
    with NodeCluster(workdir=tmp_path_factory.mktemp("node-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def node_edge(node_cluster, tmp_path_factory):
    """The edge on every address of the test's namespace: pods reach it over the node's uplink."""
    # On a non-loopback listener the edge closes registration and keeps its plain-HTTP API on
    # loopback (edge/README.md); this namespace is private, and the pods need both.
    edge = workloads.edge_for_pods(tmp_path_factory.mktemp("edge"), node_cluster.uplink)
    with edge:
        yield edge


@pytest.fixture(scope="module")
def installed(node_cluster, node_edge, tmp_path_factory):
    """mysocketd installed from the manifest, both replicas rolled out."""
    account = workloads.install_manifest(node_cluster, node_edge, tmp_path_factory.mktemp("installed"))
    workloads.rollout(node_cluster.cp, "mysocket", "mysocketd", ROLLOUT_TIMEOUT)
    return Installed(node_cluster, node_edge, account)


@pytest.fixture(scope="module")
def demo_app(installed):
    """yaml/demo-deploy.yaml and demo-service.yaml (three pods, an annotated Service), exposed."""
    cp = installed.cp
    cp.kubectl("apply", "-f", "-", input=workloads.demo_app_manifest(installed.cluster.images.demo_app))
    workloads.rollout(cp, "demo-app", "demo-app", ROLLOUT_TIMEOUT)
    name = installed.wait_dnsname("demo-app", "demo-app")
    wait_for(f"{name} to answer", lambda: installed.edge.get(name)[0] == 200, timeout=60)
    return name


@pytest.fixture
def node_namespace(node_cluster, request):
    name = dns_label(f"t-{request.node.name}")
    node_cluster.cp.kubectl("create", "namespace", name)
    yield name
    node_cluster.cp.kubectl("delete", "namespace", name, "--wait=false", check=False)
