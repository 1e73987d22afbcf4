"""`mysocketd --uninstall` against the real apiserver and edge, as mysocketd's ServiceAccount.

What it must take away: every socket this cluster owns (and only those: another
cluster's, a laptop's and a previous release's socket that was never inherited
stay), the finalizer and the annotations mysocketd wrote, the load-balancer
status of Services of its own class only. What it must never do: hang, or
leave a Service that cannot finish deleting. The Deployment-stopping part runs
on a fresh control plane with the manifest's RBAC here, and on a real node in
tests/node/test_uninstall_on_a_node.py.
"""

import json
import signal
import uuid
from pathlib import Path

import pytest

from devcluster import ControlPlane
from devcluster.controller import ControllerProcess
from devcluster.names import dns_label
from devcluster.stack import Cluster, account_sockets, annotations, exposed, wait_for
from lib.controller import OURS, SERVING_CONDITION
from lib.services import FINALIZER, has_condition

pytestmark = pytest.mark.timeout(240)
REPO_ROOT = Path(__file__).resolve().parents[2]

ENABLED = {"mysocket.io/enabled": "true"}
OUR_CLASS = {"type": "LoadBalancer", "loadBalancerClass": "mysocket.io/tunnel"}
NO_DEPLOYMENT = ("--deployment", "")        # the session control plane's Deployment is not this test's to stop


def records(log_text):
    out = []
    for line in log_text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def summary(log_text):
    [line] = [r for r in records(log_text) if r.get("message", "").startswith("uninstalled:")]
    return line


def foreign_socket(edge, account, name):
    """A socket on the same account that is not this cluster's (another cluster's, a laptop's, ...)."""
    token = edge.login(account.email, account.password)
    resp = edge.api("POST", "/connect", {"name": name, "socket_type": "http"}, token=token)
    assert resp.status == 200, resp.body
    return resp.body["socket_id"]


def ours_left(svc):
    meta = svc["metadata"]
    return sorted({k for k in OURS if k in annotations(svc)} | ({FINALIZER} & set(meta.get("finalizers") or [])))


def lb_ingress(svc):
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")


def test_takes_away_what_this_cluster_made_and_nothing_else(cluster, standins, make_controller, edge, account):
    # A Service the previous release exposed: its socket is inherited (lib/inheritance.py), so it is ours.
    inherited = foreign_socket(edge, account, f"k8s/default/{cluster.ns}/old")
    cluster.service("old", annotations={**ENABLED, "mysocket.io/socket-id": inherited})
    standins.for_service(cluster.ns, "old")
    controller = make_controller(extra_args=["--lease-name", "u-" + uuid.uuid4().hex[:6]])
    assert exposed(cluster, edge, "old") and annotations(cluster.get("old"))["mysocket.io/socket-id"] == inherited
    cluster.service("web", annotations=ENABLED)
    cluster.service("lb", **OUR_CLASS)
    cluster.service("other-lb", annotations=ENABLED, type="LoadBalancer", loadBalancerClass="example.com/lb")
    cluster.service("going", annotations=ENABLED)
    for name in ("web", "lb", "other-lb", "going"):
        standins.for_service(cluster.ns, name)
        exposed(cluster, edge, name)
    wait_for("lb's public name in its status", lambda: lb_ingress(cluster.get("lb")))
    cluster.cp.kubectl("patch", "service", "other-lb", "-n", cluster.ns, "--subresource=status", "--type=merge",
                       "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}))
    cluster.cp.kubectl("patch", "service", "web", "-n", cluster.ns, "--type=json", "-p",
                       json.dumps([{"op": "add", "path": "/metadata/finalizers/-", "value": "example.com/keep"}]))
    others = {foreign_socket(edge, account, f"mysocketd/another-cluster/{cluster.ns}/web"),
              foreign_socket(edge, account, "laptop"),
              foreign_socket(edge, account, f"k8s/default/{cluster.ns}/web")}     # a previous release's, not inherited
    ours = {s["socket_id"] for s in account_sockets(edge, account)} - others
    assert len(ours) == 5 and inherited in ours

    assert controller.stop() == 0                       # deletes nothing remote: all of it is still there
    cluster.delete("going")                             # Terminating: its finalizer waits for mysocketd
    assert cluster.get("going")["metadata"].get("deletionTimestamp")

    code, log = controller.uninstall(*NO_DEPLOYMENT)
    assert code == 0, log[-3000:]
    assert {s["socket_id"] for s in account_sockets(edge, account)} == others
    wait_for("the Terminating Service to finish deleting", lambda: cluster.get("going") is None)
    for name in ("web", "lb", "other-lb", "old"):
        svc = cluster.get(name)
        assert ours_left(svc) == [], (name, svc["metadata"])
        if name != "lb":
            assert annotations(svc)["mysocket.io/enabled"] == "true"     # the user's own annotation stays
    assert cluster.get("web")["metadata"]["finalizers"] == ["example.com/keep"]    # someone else's finalizer stays
    assert lb_ingress(cluster.get("lb")) is None
    assert [i["ip"] for i in lb_ingress(cluster.get("other-lb"))] == ["192.0.2.7"]   # another class's status stays
    line = summary(log)
    assert sorted(line["released"]) == sorted(f"{cluster.ns}/{n}" for n in ("going", "lb", "old", "other-lb", "web"))
    assert len(line["deleted"]) == 5
    assert "Uninstalled" in {reason for _, reason, _ in cluster.events("web")}

    code, log = controller.uninstall(*NO_DEPLOYMENT)    # idempotent: nothing left to do, still 0
    assert code == 0, log[-3000:]
    assert (summary(log)["deleted"], summary(log)["released"]) == ([], [])
    assert {s["socket_id"] for s in account_sockets(edge, account)} == others


def test_an_unreachable_edge_still_releases_every_service(cluster, standins, make_controller, edge, account):
    controller = make_controller()
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")
    controller.stop()

    edge.stop()
    try:
        code, log = controller.uninstall(*NO_DEPLOYMENT)
    finally:
        edge.start()
    assert code == 1, log[-3000:]
    assert "LEFT: could not list the account's sockets" in summary(log)["message"]
    assert ours_left(cluster.get("web")) == []          # the namespace would not hang on it
    assert [s["dnsname"] for s in account_sockets(edge, account)] == [dnsname]

    code, log = controller.uninstall(*NO_DEPLOYMENT)    # once the edge answers, the socket goes too
    assert code == 0, log[-3000:]
    assert account_sockets(edge, account) == []


def test_a_namespace_scoped_uninstall_leaves_other_namespaces_alone(cluster, control_plane, standins,
                                                                    make_controller, edge, account):
    other = Cluster(control_plane, dns_label(f"other-{cluster.ns}"))
    control_plane.kubectl("create", "namespace", other.ns)
    try:
        mine = make_controller()
        theirs = make_controller(namespace=other.ns)     # same cluster identity, same account, another scope
        for c in (cluster, other):
            c.service("web", annotations=ENABLED)
            standins.for_service(c.ns, "web")
        exposed(cluster, edge, "web")
        kept = exposed(other, edge, "web")
        mine.stop()

        code, log = mine.uninstall(*NO_DEPLOYMENT)
        assert code == 0, log[-3000:]
        assert [s["dnsname"] for s in account_sockets(edge, account)] == [kept]
        assert ours_left(cluster.get("web")) == []
        assert FINALIZER in other.get("web")["metadata"]["finalizers"]
        assert theirs.proc.poll() is None and edge.get(kept)[0] == 200
    finally:
        control_plane.kubectl("delete", "namespace", other.ns, "--wait=false", check=False)


def test_a_pool_member_leaves_without_taking_the_name_and_the_last_takes_it(cluster, control_plane, standins,
                                                                            make_controller, edge, account):
    """Two clusters (two identities, one account) serve one pool: uninstalling one takes only its own
    tunnels off the pool's socket, and the other goes on serving the name; the last one's takes the socket."""
    other = Cluster(control_plane, dns_label(f"other-{cluster.ns}"))
    control_plane.kubectl("create", "namespace", other.ns)
    pool = {**ENABLED, "mysocket.io/pool": "p" + uuid.uuid4().hex[:6]}
    try:
        mine = make_controller(cluster_name="ca" + uuid.uuid4().hex[:6])
        theirs = make_controller(namespace=other.ns, cluster_name="cb" + uuid.uuid4().hex[:6])
        for c in (cluster, other):
            c.service("web", annotations=pool)
        standins.for_service(cluster.ns, "web")
        [their_pod] = standins.for_service(other.ns, "web")
        dnsname = exposed(cluster, edge, "web")
        assert exposed(other, edge, "web") == dnsname
        [socket] = account_sockets(edge, account)
        # Connected, not only created: the name answered through mine's tunnel alone until theirs is up.
        wait_for("a connected tunnel of each cluster", lambda: sum(
            bool(t.get("connected")) for t in account_sockets(edge, account)[0]["tunnels"]) == 2)
        # What the leader writes when the endpoints go (tests/chaos/test_chaos_pools.py makes it for real).
        cluster.cp.kubectl("patch", "service", "web", "-n", cluster.ns, "--subresource=status", "--type=merge", "-p",
                           json.dumps({"status": {"conditions": [{
                               "type": "mysocket.io/Serving", "status": "True", "reason": "Serving", "message": "x",
                               "lastTransitionTime": "2026-11-26T00:00:00Z"}]}}))
        mine.stop()

        code, log = mine.uninstall(*NO_DEPLOYMENT)
        assert code == 0, log[-3000:]
        assert summary(log)["pools_left"] == [pool["mysocket.io/pool"]] and summary(log)["deleted"] == []
        [left] = account_sockets(edge, account)
        assert left["socket_id"] == socket["socket_id"]
        assert [t["owner"].split("/")[0] for t in left["tunnels"]] == [theirs.cluster_name]
        assert edge.get(dnsname) == (200, f"Server: {their_pod.name}\n")
        assert ours_left(cluster.get("web")) == [] and not has_condition(cluster.get("web"), SERVING_CONDITION)
        assert FINALIZER in other.get("web")["metadata"]["finalizers"]

        theirs.stop()
        code, log = theirs.uninstall(*NO_DEPLOYMENT)
        assert code == 0, log[-3000:]
        assert summary(log)["deleted"] == [dnsname] and account_sockets(edge, account) == []
    finally:
        control_plane.kubectl("delete", "namespace", other.ns, "--wait=false", check=False)


def test_a_frozen_leader_is_fenced_out_before_anything_is_deleted(cluster, standins, make_controller, edge, account):
    """The leader holds the Lease, frozen (SIGSTOP): the command takes the Lease anyway and waits one lease
    duration, the time within which a leader that has not noticed stops writing, then cleans up."""
    lease = "u-" + uuid.uuid4().hex[:6]
    leader = make_controller(extra_args=["--leader-election", "--lease-name", lease])
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    exposed(cluster, edge, "web")
    holder = json.loads(cluster.cp.kubectl("get", "lease", lease, "-n", "mysocket", "-o", "json").stdout)
    holder = holder["spec"]["holderIdentity"]
    leader.signal(signal.SIGSTOP)
    try:
        code, log = leader.uninstall(*NO_DEPLOYMENT)
    finally:
        leader.kill()                                   # as its pod would be, after the uninstall
    assert code == 0, log[-3000:]
    messages = [r.get("message", "") for r in records(log)]
    assert f"took the Lease mysocket/{lease} from {holder}" in messages
    assert any(m.startswith("waiting 10s, one lease duration") for m in messages), messages
    assert account_sockets(edge, account) == [] and ours_left(cluster.get("web")) == []
    lease_after = json.loads(cluster.cp.kubectl("get", "lease", lease, "-n", "mysocket", "-o", "json").stdout)
    assert lease_after["spec"]["holderIdentity"] == ""  # released at the end
    # The frozen replica's own Lease (lib/replicas.py) stopped changing: gone after one replica lease.
    replica_leases = json.loads(cluster.cp.kubectl("get", "lease", "-n", "mysocket", "-l",
                                                   "app.kubernetes.io/component=replica", "-o", "json").stdout)
    assert [i["spec"]["holderIdentity"] for i in replica_leases["items"]
            if i["spec"]["holderIdentity"].startswith(leader.cluster_name + "/")] == []
    assert any(m.startswith(f"deleted the Lease that replica {leader.cluster_name}/") for m in messages), messages


@pytest.fixture
def fresh_install(edge, account, tmp_path):
    """A control plane of its own with yaml/mysocketd.yaml applied (its Deployment: replicas 2, no node)."""
    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", str(REPO_ROOT / "yaml" / "mysocketd.yaml"))
        kubeconfig = cp.service_account_kubeconfig("mysocket", "mysocketd")
        yield cp, ControllerProcess(tmp_path / "uninstall", kubeconfig=kubeconfig, edge=edge, account=account,
                                    cluster_name="")


def test_it_stops_the_deployment_with_the_manifests_rbac(fresh_install):
    cp, command = fresh_install
    code, log = command.uninstall()
    assert code == 0, log[-3000:]
    deployment = json.loads(cp.kubectl("get", "deployment", "mysocketd", "-n", "mysocket", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 0
    lease = json.loads(cp.kubectl("get", "lease", "mysocketd", "-n", "mysocket", "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == ""        # released: a reinstall leads at once

    code, log = command.uninstall("--deployment", "someone-elses")
    errors = [r for r in records(log) if r.get("level") == "ERROR"]
    assert code == 2 and len(errors) == 1 and "Traceback" not in log, log[-3000:]
    assert "cannot scale deployment mysocket/someone-elses to 0 (HTTP 403)" in errors[0]["message"]
