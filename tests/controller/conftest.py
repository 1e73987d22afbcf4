"""Fixtures for the controller's integration tests: real control plane, real edge, real ssh.

The controller always runs as the ServiceAccount from yaml/mysocketd.yaml
(a TokenRequest token, not admin), so every test also proves the manifest's
RBAC is enough. Each test gets its own namespace, its own Mysocket account on
a shared edge and its own controller scoped to that namespace, so tests never
see each other's Services or sockets.
"""

import uuid
from pathlib import Path

import pytest

from devcluster import ControlPlane
from devcluster.controller import Account, ControllerProcess
from devcluster.stack import Cluster
from devcluster.standin import StandIns

MANIFEST = Path(__file__).resolve().parents[2] / "yaml" / "mysocketd.yaml"


@pytest.fixture
def account(edge, tmp_path):
    return Account.register(edge, tmp_path / "account")


@pytest.fixture
def make_controller(controller_kubeconfig, edge, account, namespace, tmp_path, test_failed):
    """Factory for controllers of this test (stopped at teardown); same state dir = same 'pod'."""
    started = []
    cluster = "c" + uuid.uuid4().hex[:6]

    def make(start=True, workdir=None, **kwargs):
        kwargs.setdefault("namespace", namespace)
        kwargs.setdefault("cluster_name", cluster)
        kwargs.setdefault("kubeconfig", controller_kubeconfig)
        kwargs.setdefault("account", account)
        c = ControllerProcess(workdir or tmp_path / f"controller{len(started)}", edge=edge, **kwargs)
        started.append(c)
        return c.start() if start else c

    yield make
    for c in started:
        c.stop()
        if test_failed():  # the report's only view of what the controller did (CI keeps nothing else)
            tail = c.log_path.read_text(errors="replace").splitlines()[-80:]
            print(f"--- last lines of {c.log_path} ---", *tail, sep="\n")
        c.reap_orphans()


@pytest.fixture
def controller(make_controller):
    return make_controller()



@pytest.fixture
def other_cluster(namespace):
    """A second, fresh control plane with the manifest applied: (Cluster on `namespace`, SA kubeconfig, StandIns).

    Fresh per test, so its kube-system UID (the default identity) and its ConfigMaps are the test's own.
    """
    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(MANIFEST))
        cp.kubectl("create", "namespace", namespace)
        with StandIns(cp) as pods:
            yield Cluster(cp, namespace), cp.service_account_kubeconfig("mysocket", "mysocketd"), pods
