"""Fixtures for the controller's integration tests: real control plane, real edge, real ssh.

The controller always runs as the ServiceAccount from yaml/mysocketd.yaml
(a TokenRequest token, not admin), so every test also proves the manifest's
RBAC is enough. Each test gets its own namespace, its own Mysocket account on
a shared edge and its own controller scoped to that namespace, so tests never
see each other's Services or sockets.
"""

import uuid

import pytest

from devcluster.controller import Account, ControllerProcess



@pytest.fixture
def account(edge, tmp_path):
    return Account.register(edge, tmp_path / "account")


@pytest.fixture
def make_controller(controller_kubeconfig, edge, account, namespace, tmp_path):
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
        c.reap_orphans()


@pytest.fixture
def controller(make_controller):
    return make_controller()

