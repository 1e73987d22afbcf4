"""One HTTPRoute, two weighted backends, two clusters of a pool: split as weighted, and all of it to the
survivor when one cluster is lost, without a failed request.

Two real control planes (each its own identity), one mysocketd each, one account; the same Gateway and
HTTPRoute applied to both, as a user of several clusters does; backend `web-a` exists only in cluster A,
`web-b` only in B (stand-in pods on their ClusterIPs). The edge routes: it is the one place that sees both.
"""

import signal
import time
import uuid

import pytest
from gwtest_helpers import Load, apply, condition, gateway_address, get, mysocketd, prepare

from devcluster import ControlPlane
from devcluster.controller import Account
from devcluster.stack import wait_for
from devcluster.standin import StandIns

pytestmark = pytest.mark.timeout(300)
NS = "shop"


def gateway(pool):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "web", "namespace": NS, "annotations": {"mysocket.io/pool": pool}},
            "spec": {"gatewayClassName": "mysocket", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}


ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "split", "namespace": NS},
         "spec": {"parentRefs": [{"name": "web"}],
                  "rules": [{"backendRefs": [{"name": "web-a", "port": 8000, "weight": 3},
                                             {"name": "web-b", "port": 8000, "weight": 1}]}]}}


def service(name, ip):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"clusterIP": ip, "selector": {"app": name}, "ports": [{"name": "http", "port": 8000}]}}


def shares(answers):
    served = [body for _, status, body in answers if status == 200]
    return {name: round(sum(1 for b in served if b.startswith(f"Server: {name}")) / max(1, len(served)), 2)
            for name in ("web-a", "web-b")}


def test_weighted_backends_in_two_clusters_and_losing_one(cp_a, gw_edge, tmp_path):
    account = Account.register(gw_edge, tmp_path / "account")
    pool = "shop-" + uuid.uuid4().hex[:6]
    with ControlPlane() as cp_b, StandIns(cp_a) as pods_a, StandIns(cp_b) as pods_b:
        controllers = []
        try:
            for cp, name, ip, pods in ((cp_a, "web-a", "10.96.221.1", pods_a), (cp_b, "web-b", "10.96.222.1", pods_b)):
                kubeconfig = prepare(cp)
                cp.kubectl("create", "namespace", NS)
                apply(cp, service(name, ip), gateway(pool), ROUTE)
                pods.for_service(NS, name)
                controllers.append(mysocketd(tmp_path / name, kubeconfig, gw_edge, account).start())
            address = gateway_address(cp_a, NS, "web")
            assert gateway_address(cp_b, NS, "web") == address          # one pool, one socket, one address
            for cp in (cp_a, cp_b):
                wait_for("the route accepted", lambda cp=cp: (condition(get(cp, "httproute", NS, "split"),
                                                                        "Accepted") or {}).get("status") == "True")
            with Load(gw_edge, address) as load:
                wait_for("both clusters answering", lambda: set(shares(load.answers[-40:]).values()) != {0.0} and
                         all(shares(load.answers[-100:]).values()), timeout=60)
                split_from = time.monotonic()
                split = load.wait(400, after=split_from)
                measured = shares(split)
                print(f"split over {len(split)} requests: {measured} (weights 3:1)")
                assert Load.failed(split) == []
                assert abs(measured["web-a"] - 0.75) <= 0.08 and abs(measured["web-b"] - 0.25) <= 0.08, measured

                lost = time.monotonic()
                controllers[1].signal_pod(signal.SIGKILL)                # cluster B gone: mysocketd, tunnels, pods
                pods_b.stop()
                after = load.wait(len(load.since(lost)) + 300, after=lost)
                moved = next((t for t, _, body in after if t > lost + 1 and all(
                    b.startswith("Server: web-a") for _, _, b in load.since(t))), None)
                print(f"cluster B lost: {len(after)} requests, {len(Load.failed(after))} failed, "
                      f"all on A after {moved - lost if moved else float('nan'):.1f}s")
                assert Load.failed(after) == [], Load.failed(after)[:5]
                assert moved is not None and shares(load.since(moved)) == {"web-a": 1.0, "web-b": 0.0}
        finally:
            for c in controllers:
                c.stop()
                c.reap_orphans()
