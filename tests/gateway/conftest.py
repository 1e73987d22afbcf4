"""Fixtures of the Gateway/Ingress tests: an edge, a control plane of their own, mysocketd as its manifest says.

mysocketd's route controller watches cluster-wide (a Gateway takes routes from any namespace it allows), so
these tests get a control plane of their own rather than the session's, where other modules leave Services.
"""

import pytest

from devcluster import ControlPlane
from edge.testing import EdgeProcess


ADDRESSES = "127.100.2.0/24"


@pytest.fixture(scope="module")
def gw_edge(tmp_path_factory):
    """The edge on every address of the test's namespace, so each Gateway's own address answers."""
    edge = EdgeProcess(tmp_path_factory.mktemp("edge"), extra_args=(     # no --admin beyond loopback
        "--socket-addresses", ADDRESSES, "--registration", "open", "--api-listen", "127.0.0.1",
        "--tunnel-server", "127.0.0.1"))   # where mysocketd connects each tunnel (its tunnel_server)
    edge.host = "0.0.0.0"
    with edge:
        edge.host = "127.0.0.1"     # the API, the SSH server and every socket's name answer there too
        yield edge


@pytest.fixture(scope="module")
def cp_a():
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="module")
def installed(cp_a, gw_edge, tmp_path_factory):
    """mysocketd on cp_a as its manifest's ServiceAccount, with an account of its own; stand-in pods."""
    from gwtest_helpers import mysocketd, prepare

    from devcluster.controller import Account
    from devcluster.standin import StandIns

    workdir = tmp_path_factory.mktemp("installed")
    account = Account.register(gw_edge, workdir / "account")
    controller = mysocketd(workdir / "mysocketd", prepare(cp_a), gw_edge, account)
    with StandIns(cp_a) as pods:
        controller.start()
        try:
            yield Installed(cp_a, gw_edge, account, controller, pods)
        finally:
            controller.stop()
            controller.reap_orphans()


class Installed:
    def __init__(self, cp, edge, account, controller, pods):
        self.cp, self.edge, self.account, self.controller, self.pods = cp, edge, account, controller, pods
