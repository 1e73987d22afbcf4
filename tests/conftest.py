"""Fixtures shared by every test: one real control plane per session.

The heavy lifting lives in devcluster/; this file only wires it into pytest.
Integration fixtures insist on the private network namespace `make test`
creates (devcluster.netns.assert_private_netns raises, it never skips), so
nothing a test starts can listen outside it. Namespaces are deleted without
waiting: with no controller-manager they stay Terminating forever, which is
harmless.
"""

from pathlib import Path

import pytest
from kubernetes import config as kube_config

from devcluster import ControlPlane, assert_private_netns
from devcluster.names import dns_label
from devcluster.stack import Cluster
from devcluster.standin import StandIns
from edge.testclients import Backends, SshClients
from edge.testing import EdgeProcess

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so teardowns know whether the test failed."""
    report = yield
    setattr(item, "report_" + report.when, report)
    return report


@pytest.fixture
def test_failed(request):
    """A callable: has this test failed (setup or call)? For teardowns that keep evidence only then."""
    return lambda: any(getattr(getattr(request.node, "report_" + when, None), "failed", False)
                       for when in ("setup", "call"))


@pytest.fixture(scope="session")
def control_plane():
    """etcd + kube-apiserver for the whole session (RBAC on, admin = system:masters)."""
    assert_private_netns()
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def admin_kubeconfig(control_plane):
    """Path of the admin kubeconfig."""
    return control_plane.kubeconfig


@pytest.fixture
def api_client(admin_kubeconfig):
    """A kubernetes.client.ApiClient authenticated as admin."""
    client = kube_config.new_client_from_config(config_file=str(admin_kubeconfig))
    yield client
    client.close()


@pytest.fixture
def service_account_kubeconfig(control_plane):
    """Factory: (namespace, name) -> kubeconfig path using a TokenRequest token
    for that ServiceAccount (created if missing)."""
    return control_plane.service_account_kubeconfig


@pytest.fixture
def namespace(control_plane, request):
    """A fresh namespace with a unique name; deleted (without waiting) afterwards."""
    name = dns_label(f"t-{request.node.name}")
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def standins(control_plane):
    """Stand-in pods (devcluster.standin.StandIns), all stopped at teardown."""
    with StandIns(control_plane) as pods:
        yield pods


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """One edge (with its admin endpoints) per test module, stopped at the module's end."""
    with EdgeProcess(tmp_path_factory.mktemp("edge"), admin=True) as proc:
        yield proc


@pytest.fixture(scope="session")
def controller_kubeconfig(control_plane):
    """A kubeconfig of the manifest's ServiceAccount (yaml/mysocketd.yaml applied): what mysocketd runs as."""
    control_plane.kubectl("apply", "-f", str(REPO_ROOT / "yaml" / "mysocketd.yaml"))
    return control_plane.service_account_kubeconfig("mysocket", "mysocketd")


@pytest.fixture
def cluster(control_plane, namespace):
    """kubectl verbs on the test's namespace (devcluster.stack.Cluster)."""
    return Cluster(control_plane, namespace)


@pytest.fixture
def ssh(tmp_path):
    """OpenSSH clients a test starts (edge.testclients.SshClients); every one stopped at teardown."""
    clients = SshClients(tmp_path)
    yield clients
    clients.stop_all()


@pytest.fixture
def backend():
    """Factory: backend(name) -> a started HttpBackend, shut down at teardown."""
    backends = Backends()
    yield backends.start
    backends.close()
