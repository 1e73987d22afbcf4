"""The control plane starts, answers, survives an apiserver restart, and leaves nothing behind.

These tests run their own ControlPlane (not the session one) because they stop it.
"""

import socket
from urllib.parse import urlparse

import psutil
import pytest

from devcluster import ControlPlane, KubectlError, assert_private_netns
from devcluster.processes import find_processes

NAMES = ("etcd", "kube-apiserver")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def own_control_plane():
    assert_private_netns()
    cp = ControlPlane()
    try:
        yield cp.start()
    finally:
        cp.stop()


def test_readyz_ok_and_nothing_left_after_stop():
    assert_private_netns()
    cp = ControlPlane()
    with cp:
        assert cp.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
        procs = {name: psutil.Process(pid) for name, pid in cp.pids().items()}
        assert {p.name() for p in procs.values()} == set(NAMES)
        assert len(find_processes(NAMES, str(cp.workdir))) == 2
    for name, proc in procs.items():
        assert not _alive(proc), f"{name} (pid {proc.pid}) still running after stop()"
    assert find_processes(NAMES, str(cp.workdir)) == []
    assert not cp.workdir.exists()


def test_stop_after_failed_test_body_still_cleans_up():
    assert_private_netns()
    with pytest.raises(ZeroDivisionError):
        with ControlPlane() as cp:
            procs = [psutil.Process(pid) for pid in cp.pids().values()]
            1 / 0  # noqa: B018 -- the failure under test
    assert len(procs) == 2 and not any(_alive(p) for p in procs)
    assert find_processes(NAMES, str(cp.workdir)) == []


def test_apiserver_restart_keeps_port_credentials_and_data(own_control_plane):
    cp = own_control_plane
    cp.kubectl("create", "configmap", "survivor", "-n", "default", "--from-literal=k=v")
    sa_kubeconfig = cp.service_account_kubeconfig("default", "watcher")
    server, etcd_pid = cp.server, cp.pids()["etcd"]
    port = urlparse(server).port

    cp.stop_apiserver()
    assert cp.pids()["kube-apiserver"] is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(KubectlError):
        cp.kubectl("get", "configmap", "survivor", "-n", "default", "--request-timeout=5s")

    cp.start_apiserver()
    assert cp.server == server and cp.pids()["etcd"] == etcd_pid
    got = cp.kubectl("get", "configmap", "survivor", "-n", "default", "-o", "jsonpath={.data.k}")
    assert got.stdout == "v"
    # A TokenRequest token issued before the restart is still accepted.
    whoami = cp.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                        kubeconfig_path=sa_kubeconfig)
    assert whoami.stdout == "system:serviceaccount:default:watcher"
