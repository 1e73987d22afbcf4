"""A real node with the conformance suite's images, the Gateway API CRDs, the edge on ports 80/443 with an
address per Gateway, and mysocketd installed from its manifest, as a user would."""

import pytest

from devcluster import conformance, workloads
from devcluster.images import ConformanceImages
from devcluster.nodecluster import NodeCluster

GATEWAY_ADDRESSES = "127.100.0.0/24"
CONFORMANCE_NAMESPACES = ("gateway-conformance-infra", "gateway-conformance-app-backend",
                          "gateway-conformance-web-backend")


@pytest.fixture(scope="module")
def conformance_cluster(tmp_path_factory):
    with NodeCluster(workdir=tmp_path_factory.mktemp("node-cluster"),
                     extra_archives=(ConformanceImages.load().archive,)) as cluster:
        conformance.install_crds(cluster.cp)
        yield cluster


@pytest.fixture(scope="module")
def gateway_edge(conformance_cluster, tmp_path_factory):
    """The edge on every address of the test's namespace, HTTP on 80 and HTTPS on 443 (the listener ports the
    suite dials), with the loopback addresses the Gateways get (--socket-addresses)."""
    edge = workloads.edge_for_pods(tmp_path_factory.mktemp("edge"), conformance_cluster.uplink, extra_args=(
        "--http-port", "80", "--https-port", "443", "--socket-addresses", GATEWAY_ADDRESSES))
    with edge:
        yield edge


@pytest.fixture(scope="module")
def mysocketd(conformance_cluster, gateway_edge, tmp_path_factory):
    cp = conformance_cluster.cp
    account = workloads.install_manifest(conformance_cluster, gateway_edge, tmp_path_factory.mktemp("installed"))
    cp.kubectl("apply", "-f", str(workloads.YAML_DIR / "gateway-api" / "gatewayclass.yaml"))
    # The suite's certificates live in its namespaces: let mysocketd read them, as the README says.
    rbac = (workloads.YAML_DIR / "optional" / "gateway-tls-rbac.yaml").read_text()
    for namespace in CONFORMANCE_NAMESPACES:
        cp.kubectl("create", "namespace", namespace)
        cp.kubectl("apply", "-f", "-", input=rbac.replace("cert-namespace", namespace))
    workloads.rollout(cp, "mysocket", "mysocketd", 180)
    return account
