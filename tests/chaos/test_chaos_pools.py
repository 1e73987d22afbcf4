"""One public name served by two clusters (mysocket.io/pool): they join, fail, withdraw and come back.

Two real control planes (each its own kube-system UID, so its own cluster identity with default
flags), one controller each, one Mysocket account, stand-in pods on distinct ClusterIPs.
"""

import json
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from chaos_world import record
from load import Load

from devcluster import ControlPlane
from devcluster.controller import Account, ControllerProcess
from devcluster.stack import Cluster, account_sockets, annotations, wait_for
from devcluster.standin import StandIns

MANIFEST = Path(__file__).resolve().parents[2] / "yaml" / "mysocketd.yaml"


@pytest.fixture
def two_clusters(control_plane, controller_kubeconfig, edge, namespace, tmp_path):
    """((Cluster, StandIns, start_controller) for A and for B), one account."""
    account = Account.register(edge, tmp_path / "account")
    made = []

    def starter(kubeconfig, name):
        def start():
            c = ControllerProcess(tmp_path / name, kubeconfig=kubeconfig, edge=edge, account=account,
                                  namespace=namespace, cluster_name="", log_level="INFO",
                                  extra_args=["--resync-seconds", "2"])
            made.append(c)
            return c.start()
        return start

    with ControlPlane() as cp_b:
        cp_b.kubectl("apply", "-f", str(MANIFEST))
        cp_b.kubectl("create", "namespace", namespace)
        kubeconfig_b = cp_b.service_account_kubeconfig("mysocket", "mysocketd")
        with StandIns(control_plane) as pods_a, StandIns(cp_b) as pods_b:
            try:
                yield ((Cluster(control_plane, namespace), pods_a, starter(controller_kubeconfig, "a")),
                       (Cluster(cp_b, namespace), pods_b, starter(kubeconfig_b, "b")), account)
            finally:
                for c in made:
                    c.stop()
                    c.reap_orphans()


def pooled(cluster, name, pool, ip):
    return cluster.service(name, annotations={"mysocket.io/enabled": "true", "mysocket.io/pool": pool},
                           clusterIP=ip)


def pool_sockets(edge, account, pool):
    return [s for s in account_sockets(edge, account) if s["name"] == f"mysocketd-pool/{pool}"]


def connected(socket):
    return [t for t in socket["tunnels"] if t.get("connected")]


def servers(answers):
    return {body.strip() for _, status, body in answers if status == 200}


def test_two_clusters_serve_one_name_and_survive_losing_one(two_clusters, edge):
    (a, pods_a, start_a), (b, pods_b, start_b), account = two_clusters
    start_a()
    controller_b = start_b()
    pool = "shared-" + uuid.uuid4().hex[:6]
    pooled(a, "web", pool, "10.96.211.1")
    pooled(b, "web", pool, "10.96.212.1")
    [pod_a] = pods_a.for_service(a.ns, "web")
    [pod_b] = pods_b.for_service(b.ns, "web")
    [socket] = wait_for("one pool socket with both clusters' tunnels connected", lambda: (lambda s: s if len(s) == 1
                        and len(connected(s[0])) == 2 else None)(pool_sockets(edge, account, pool)), timeout=60)
    dnsname = socket["dnsname"]
    dnsnames = {annotations(c.get("web"))["mysocket.io/dnsname"] for c in (a, b)}
    assert dnsnames == {dnsname}
    said = wait_for("served-by on the Service", lambda: annotations(a.get("web")).get("mysocket.io/served-by"))
    assert said.startswith("2 tunnels connected") and "other clusters: 1" in said, said

    with Load(edge, dnsname) as load:
        spread = load.wait_for_answers(60)
        assert servers(spread) == {f"Server: {pod_a.name}", f"Server: {pod_b.name}"}
        started = time.monotonic()
        controller_b.signal_pod(signal.SIGKILL)       # cluster B goes away: its controller, tunnels and pods
        pods_b.stop(pod_b)
        while time.monotonic() - started < 30:        # until the last answer from B (bounded)
            recent = load.since(time.monotonic() - 1.0)
            if len(recent) > 10 and servers(recent) == {f"Server: {pod_a.name}"}:
                break
            time.sleep(0.1)
        moved = time.monotonic() - started
        after_kill = load.wait_for_answers(len(load.since(started)) + 50, after=started)
        print(f"cluster B lost: {len(after_kill)} requests, {len(Load.failed(after_kill))} failed, "
              f"all traffic on A after {moved:.1f}s")
        assert Load.failed(after_kill) == [], Load.failed(after_kill)[:5]
        record("one of two pool clusters lost (controller, tunnels, pods)", [moved],
               {"lost": 0, "duplicated": 0, "leaked": 0, "requests": len(after_kill),
                "failed": len(Load.failed(after_kill))})

        start_b()                                     # back: the same state dir, new stand-in pod
        [pod_b] = pods_b.for_service(b.ns, "web")
        back = time.monotonic()
        wait_for("traffic spread over both clusters again",
                 lambda: servers(load.since(time.monotonic() - 2.0))
                 == {f"Server: {pod_a.name}", f"Server: {pod_b.name}"},
                 timeout=60)
        print(f"cluster B back: traffic spread again after {time.monotonic() - back:.1f}s")
        assert Load.failed(load.since(back)) == []
    assert len(pool_sockets(edge, account, pool)) == 1


def test_a_cluster_without_a_ready_endpoint_withdraws_and_comes_back(two_clusters, edge):
    (a, pods_a, start_a), (b, pods_b, start_b), account = two_clusters
    start_a()
    start_b()
    pool = "ready-" + uuid.uuid4().hex[:6]
    pooled(a, "web", pool, "10.96.221.1")
    pooled(b, "web", pool, "10.96.222.1")
    [pod_a] = pods_a.for_service(a.ns, "web")
    [pod_b] = pods_b.for_service(b.ns, "web")
    slice_ = endpoint_slice(a, "web", "10.96.221.1", ready=True)   # as the EndpointSlice controller would
    [socket] = wait_for("both clusters connected", lambda: (lambda s: s if len(s) == 1 and len(connected(s[0])) == 2
                        else None)(pool_sockets(edge, account, pool)), timeout=60)
    with Load(edge, socket["dnsname"]) as load:
        load.wait_for_answers(40)
        endpoint_slice(a, "web", "10.96.221.1", ready=False, body=slice_)        # A's only pod not ready
        wait_for("A's tunnel withdrawn", lambda: len(connected(pool_sockets(edge, account, pool)[0])) == 1, timeout=30)
        withdrawn = time.monotonic()
        only_b = load.wait_for_answers(60, after=withdrawn)
        assert servers(only_b) == {f"Server: {pod_b.name}"} and Load.failed(only_b) == []
        events = wait_for("the NoReadyEndpoints Event",
                          lambda: [m for t, r, m in a.events("web") if r == "NoReadyEndpoints"])
        assert "no ready endpoint" in events[0]
        condition = wait_for("the Serving condition False",
                             lambda: [c for c in a.get("web")["status"].get("conditions") or []
                                      if c["type"] == "mysocket.io/Serving" and c["status"] == "False"])
        assert condition[0]["reason"] == "NoReadyEndpoints"
        endpoint_slice(a, "web", "10.96.221.1", ready=True, body=slice_)
        wait_for("A serving again", lambda: servers(load.since(time.monotonic() - 2.0)) ==
                 {f"Server: {pod_a.name}", f"Server: {pod_b.name}"}, timeout=30)
        assert Load.failed(load.since(withdrawn)) == []


def test_two_clusters_enabling_one_pool_at_once_make_one_socket_ten_times_out_of_ten(two_clusters, edge):
    (a, pods_a, start_a), (b, pods_b, start_b), account = two_clusters
    start_a()
    start_b()
    for i in range(10):
        pool = f"race{i}-" + uuid.uuid4().hex[:4]
        both = [threading.Thread(target=pooled, args=(c, f"web{i}", pool, f"10.96.23{n}.{i + 1}"))
                for n, c in enumerate((a, b))]
        for t in both:
            t.start()
        for t in both:
            t.join(60)
        names = wait_for(f"round {i}: both Services named", lambda: (lambda x, y: (x, y) if x and y else None)(
            annotations(a.get(f"web{i}")).get("mysocket.io/dnsname"),
            annotations(b.get(f"web{i}")).get("mysocket.io/dnsname")), timeout=60)
        assert names[0] == names[1], f"round {i}: two names {names}"
        assert len(pool_sockets(edge, account, pool)) == 1, f"round {i}: {pool_sockets(edge, account, pool)}"


def test_a_member_leaving_never_takes_the_name_from_the_others(two_clusters, edge):
    (a, pods_a, start_a), (b, pods_b, start_b), account = two_clusters
    start_a()
    start_b()
    pool = "leave-" + uuid.uuid4().hex[:6]
    pooled(a, "web", pool, "10.96.241.1")
    pooled(b, "web", pool, "10.96.242.1")
    pods_a.for_service(a.ns, "web")
    [pod_b] = pods_b.for_service(b.ns, "web")
    [socket] = wait_for("both connected", lambda: (lambda s: s if len(s) == 1 and len(connected(s[0])) == 2 else None)(
        pool_sockets(edge, account, pool)), timeout=60)
    a.delete("web")
    wait_for("A let go of its Service", lambda: a.get("web") is None, timeout=30)
    wait_for("only B's tunnel left", lambda: len(pool_sockets(edge, account, pool)[0]["tunnels"]) == 1, timeout=30)
    assert pool_sockets(edge, account, pool)[0]["socket_id"] == socket["socket_id"]
    assert edge.get(socket["dnsname"]) == (200, f"Server: {pod_b.name}\n")
    b.delete("web")
    wait_for("the last member gone: the socket deleted", lambda: pool_sockets(edge, account, pool) == [], timeout=30)


def endpoint_slice(cluster, service, ip, ready, body=None):
    """Create or update the Service's EndpointSlice (stand-in pods have no endpointslice controller)."""
    body = body or {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": f"{service}-standin", "namespace": cluster.ns,
                                 "labels": {"kubernetes.io/service-name": service}},
                    "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]}
    body["endpoints"] = [{"addresses": [ip], "conditions": {"ready": ready}}]
    cluster.cp.kubectl("apply", "-f", "-", input=json.dumps(body))
    return body
