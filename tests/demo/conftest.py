"""Fixtures for tests/demo: a controller on the session control plane, run as the manifest's ServiceAccount.

Kept apart from tests/controller/conftest.py on purpose (fixtures do not cross
directories): the same few lines, scoped to one namespace per test so the
controller here never touches other tests' Services.
"""

import uuid
from pathlib import Path

import pytest

from devcluster.controller import Account, ControllerProcess
from devcluster.stack import Cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_controller_kubeconfig(control_plane):
    control_plane.kubectl("apply", "-f", str(ROOT / "yaml" / "mysocketd.yaml"))
    return control_plane.service_account_kubeconfig("mysocket", "mysocketd")


@pytest.fixture
def cluster(control_plane, namespace):
    return Cluster(control_plane, namespace)


@pytest.fixture
def controller(demo_controller_kubeconfig, edge, namespace, tmp_path):
    """mysocketd watching only this test's namespace, with its own account; stopped at teardown."""
    account = Account.register(edge, tmp_path / "account")
    proc = ControllerProcess(tmp_path / "controller", kubeconfig=demo_controller_kubeconfig, edge=edge,
                             account=account, namespace=namespace, cluster_name="m" + uuid.uuid4().hex[:6],
                             log_level="INFO")
    with proc:
        yield proc
