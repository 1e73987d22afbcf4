"""`mysocketd --uninstall` takes away the sockets this cluster made for Gateways (and their TCP listeners) and
Ingresses, and leaves another cluster's sockets of the same shape on the same account.

A module of its own: its control plane (cp_a is per module) runs no other mysocketd that would make the
sockets again."""

import pytest
from gwtest_helpers import GW, apply, gateway, gateway_address, mysocketd, prepare, route, service

from devcluster.controller import Account
from devcluster.standin import StandIns
from devcluster.stack import wait_for

pytestmark = pytest.mark.timeout(300)
NS = "leaving"


def account_sockets(edge, account):
    token = edge.login(account.email, account.password)
    return {s["name"]: s["socket_id"] for s in edge.api("GET", "/connect", token=token).body}


def ingress():
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop", "namespace": NS},
            "spec": {"ingressClassName": "mysocket", "defaultBackend": {"service": {"name": "app",
                                                                                   "port": {"number": 8000}}}}}


def test_uninstall_deletes_this_clusters_gateway_and_ingress_sockets_only(cp_a, gw_edge, tmp_path):
    account = Account.register(gw_edge, tmp_path / "account")
    controller = mysocketd(tmp_path / "mysocketd", prepare(cp_a), gw_edge, account)
    gw = gateway(NS)
    gw["spec"]["listeners"].append({"name": "db", "port": 5432, "protocol": "TCP"})
    tcp = {"apiVersion": GW, "kind": "TCPRoute", "metadata": {"name": "db", "namespace": NS},
           "spec": {"parentRefs": [{"name": "web", "sectionName": "db"}],
                    "rules": [{"backendRefs": [{"name": "app", "port": 8000}]}]}}
    cp_a.kubectl("create", "namespace", NS)
    with StandIns(cp_a) as pods:
        controller.start()
        try:
            apply(cp_a, service(NS, "app", "10.96.250.1"), gw,
                  route(NS, [{"backendRefs": [{"name": "app", "port": 8000}]}], parent="web"), tcp, ingress())
            pods.for_service(NS, "app")
            gateway_address(cp_a, NS, "web")
            kinds = ("/gateway/", "/gateway-tcp/", "/ingress/")
            ours = wait_for("the Gateway's, its TCP listener's and the Ingress's sockets", lambda: (lambda names: (
                names if all(any(k in n for n in names) for k in kinds) else None))(
                    [n for n in account_sockets(gw_edge, account) if n.startswith("mysocketd/")]), timeout=60)
            assert len(ours) == 3, ours
        finally:
            assert controller.stop() == 0                   # a stop deletes nothing at the edge
            controller.reap_orphans()
    token = gw_edge.login(account.email, account.password)
    others = {f"mysocketd/another-cluster/gateway/{NS}/web", f"mysocketd/another-cluster/ingress/{NS}/shop"}
    for name in others:
        assert gw_edge.api("POST", "/socket", {"name": name, "socket_type": "http"}, token=token).status == 200
    assert set(ours) <= set(account_sockets(gw_edge, account))

    code, log = controller.uninstall("--deployment", "")
    assert code == 0, log[-3000:]
    assert set(account_sockets(gw_edge, account)) == others
    code, log = controller.uninstall("--deployment", "")     # nothing left to do: still 0
    assert code == 0, log[-3000:]
    assert set(account_sockets(gw_edge, account)) == others
