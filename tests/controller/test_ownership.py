"""Never touch what is not provably yours: copies, restores, other clusters, upgrades, migrations.

Each test sets up the second writer the issue names (a copied Service, a
second cluster with default flags, the previous release's leftovers, the
original controller's sockets) and asserts that every public name that is
not this Service's keeps answering and is never deleted or adopted.
"""

from devcluster.stack import account_sockets, annotations, answered, exposed, wait_for
from lib.services import DNSNAME, FINALIZER, SOCKET_ID, TUNNEL_ID

ENABLED = {"mysocket.io/enabled": "true"}


def names(edge, account):
    return sorted(s["name"] for s in account_sockets(edge, account))


def test_a_copied_service_gets_its_own_socket_and_never_touches_the_original(
        cluster, standins, controller, edge, account, control_plane):
    cluster.service("web", annotations=ENABLED)
    [original_pod] = standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")
    original = cluster.get("web")

    # `kubectl get svc web -o yaml`, edited into another name (the test's namespace is all the controller sees).
    copy_annotations = {k: v for k, v in annotations(original).items() if k.startswith("mysocket.io/")}
    cluster.service("web-copy", annotations=copy_annotations)
    [copy_pod] = standins.for_service(cluster.ns, "web-copy")
    wait_for("the SocketNotOwned Warning on the copy",
             lambda: [m for t, r, m in cluster.events("web-copy") if (t, r) == ("Warning", "SocketNotOwned")])
    copy_dnsname = wait_for("the copy's own name", lambda: (lambda d: d if d != dnsname else None)(
        annotations(cluster.get("web-copy")).get(DNSNAME)))
    wait_for("the copy answering on its own name", lambda: answered(edge, copy_dnsname) == f"Server: {copy_pod.name}\n")
    assert answered(edge, dnsname) == f"Server: {original_pod.name}\n"
    assert annotations(cluster.get("web-copy"))[SOCKET_ID] != annotations(original)[SOCKET_ID]

    cluster.delete("web-copy")
    wait_for("the copy gone", lambda: cluster.get("web-copy") is None)
    wait_for("only the original's socket left", lambda: names(edge, account) == [
        f"mysocketd/{controller.cluster_name}/{cluster.ns}/web"])
    assert answered(edge, dnsname) == f"Server: {original_pod.name}\n"
    assert annotations(cluster.get("web"))[SOCKET_ID] == annotations(original)[SOCKET_ID]


def test_two_clusters_with_default_flags_never_touch_each_others_sockets(
        cluster, standins, make_controller, other_cluster, edge, account):
    """Same account, same namespace and Service name in both clusters, resyncing every second."""
    cluster_b, kubeconfig_b, standins_b = other_cluster
    fast = ["--resync-seconds", "1"]
    a = make_controller(cluster_name="", extra_args=fast)
    b = make_controller(cluster_name="", kubeconfig=kubeconfig_b, extra_args=fast)
    cluster.service("web", annotations=ENABLED, clusterIP="10.96.201.1")
    cluster_b.service("web", annotations=ENABLED, clusterIP="10.96.202.2")
    [pod_a] = standins.for_service(cluster.ns, "web")
    [pod_b] = standins_b.for_service(cluster_b.ns, "web")
    name_a, name_b = exposed(cluster, edge, "web"), exposed(cluster_b, edge, "web")
    assert name_a != name_b

    for c in (a, b):
        wait_for("three sweeps each", lambda c=c: _calls(c, "list_sockets") >= 4)
    assert answered(edge, name_a) == f"Server: {pod_a.name}\n" and answered(edge, name_b) == f"Server: {pod_b.name}\n"
    assert _calls(a, "delete_socket") == 0 and _calls(b, "delete_socket") == 0
    [identity_a] = {s["name"].split("/")[1] for s in account_sockets(edge, account) if s["dnsname"] == name_a}
    [identity_b] = {s["name"].split("/")[1] for s in account_sockets(edge, account) if s["dnsname"] == name_b}
    assert identity_a != identity_b
    assert f'mysocketd_cluster_info{{cluster="{identity_a}"}} 1.0' in a.metrics()
    assert len(account_sockets(edge, account)) == 2


def test_an_upgrade_keeps_every_name_and_leaves_unrecorded_sockets_alone(
        other_cluster, make_controller, edge, account):
    """The previous release's state: sockets `k8s/default/<ns>/<name>`, ids recorded on the Services."""
    cluster_b, kubeconfig_b, standins_b = other_cluster
    token = edge.login(account.email, account.password)
    ns = cluster_b.ns

    def old_socket(name):
        return edge.api("POST", "/connect", {"name": f"k8s/default/{ns}/{name}", "socket_type": "http"},
                        token=token).body

    web, retained, leftover = old_socket("web"), old_socket("kept"), old_socket("gone")
    cluster_b.service("web", annotations={**ENABLED, **_recorded(web)})
    cluster_b.service("kept", annotations={"mysocket.io/retain": "true", **_recorded(retained)})
    for name in ("web", "kept"):
        cluster_b.kubectl("patch", "service", name, "--type=merge", "-p",
                          '{"metadata": {"finalizers": ["%s"]}}' % FINALIZER)
    [pod] = standins_b.for_service(ns, "web")
    before = sorted(s["socket_id"] for s in account_sockets(edge, account))

    upgraded = make_controller(cluster_name="", kubeconfig=kubeconfig_b, extra_args=["--resync-seconds", "1"])
    wait_for("web answering on its old name", lambda: answered(edge, web["dnsname"]) == f"Server: {pod.name}\n")
    wait_for("two sweeps", lambda: _calls(upgraded, "list_sockets") >= 3)
    assert sorted(s["socket_id"] for s in account_sockets(edge, account)) == before, "recreated or deleted"
    assert annotations(cluster_b.get("web"))[DNSNAME] == web["dnsname"]
    assert any("left alone" in r.get("message", "") and r.get("socket_id") == leftover["socket_id"]
               for r in upgraded.log_records())

    # A Service restored after the upgrade, carrying the leftover's id, inherits nothing.
    cluster_b.service("gone", annotations={**ENABLED, **_recorded(leftover)})
    standins_b.for_service(ns, "gone")
    restored = wait_for("the restored Service's own name",
                        lambda: (lambda d: d if d and d != leftover["dnsname"] else None)(
                            annotations(cluster_b.get("gone")).get(DNSNAME)))
    assert restored != leftover["dnsname"]
    assert leftover["socket_id"] in {s["socket_id"] for s in account_sockets(edge, account)}

    # The inherited socket is this cluster's: deleting its Service deletes it.
    cluster_b.delete("web")
    wait_for("the inherited socket deleted with its Service",
             lambda: web["socket_id"] not in {s["socket_id"] for s in account_sockets(edge, account)})
    assert {retained["socket_id"], leftover["socket_id"]} <= {s["socket_id"] for s in account_sockets(edge, account)}


def test_the_original_controllers_sockets_are_left_alone_unless_migrating(
        cluster, standins, make_controller, edge, account):
    token = edge.login(account.email, account.password)
    original = edge.api("POST", "/connect", {"name": f"k8s {cluster.ns}.web", "socket_type": "http"},
                        token=token).body
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    c = make_controller(extra_args=["--resync-seconds", "1"])
    dnsname = exposed(cluster, edge, "web")
    assert dnsname != original["dnsname"]
    wait_for("two sweeps", lambda: _calls(c, "list_sockets") >= 3)
    assert original["socket_id"] in {s["socket_id"] for s in account_sockets(edge, account)}


def test_migrating_from_the_original_controller_adopts_its_names_and_cleans_up_its_leftovers(
        cluster, standins, make_controller, edge, account):
    token = edge.login(account.email, account.password)

    def original(name):
        return edge.api("POST", "/connect", {"name": f"k8s {cluster.ns}.{name}", "socket_type": "http"},
                        token=token).body

    web, leftover = original("web"), original("long-gone")
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    make_controller(extra_args=["--adopt-original-sockets"])
    assert exposed(cluster, edge, "web") == web["dnsname"]
    assert "SocketAdopted" in {r for _, r, _ in cluster.events("web")}
    wait_for("the original's leftover deleted",
             lambda: leftover["socket_id"] not in {s["socket_id"] for s in account_sockets(edge, account)})
    assert [s["socket_id"] for s in account_sockets(edge, account)] == [web["socket_id"]]


def test_removing_the_annotation_from_a_cloud_load_balancer_leaves_its_status(cluster, standins, controller, edge):
    cluster.service("lb", type="LoadBalancer", annotations=ENABLED)
    cloud = {"status": {"loadBalancer": {"ingress": [{"hostname": "a1b2c3.elb.example.com"}]}}}
    import json
    cluster.kubectl("patch", "service", "lb", "--subresource=status", "--type=merge", "-p", json.dumps(cloud))
    standins.for_service(cluster.ns, "lb")
    exposed(cluster, edge, "lb")
    cluster.annotate("lb", **{"mysocket.io/enabled": None})
    wait_for("let go", lambda: FINALIZER not in (cluster.get("lb")["metadata"].get("finalizers") or []))
    assert cluster.get("lb")["status"]["loadBalancer"] == cloud["status"]["loadBalancer"]


def test_a_service_that_keeps_failing_does_not_stop_the_sweep(cluster, standins, make_controller, edge, account):
    c = make_controller(extra_args=["--resync-seconds", "1"])
    cluster.service("broken", annotations={**ENABLED, "mysocket.io/protected-secret": "no-such-secret"})
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")
    wait_for("the broken one's Warning", lambda: "InvalidAnnotation" in {r for _, r, _ in cluster.events("broken")})

    token = edge.login(account.email, account.password)
    ghost = edge.api("POST", "/connect", {"name": f"mysocketd/{c.cluster_name}/{cluster.ns}/ghost"}, token=token).body
    [web] = [s for s in account_sockets(edge, account) if s["dnsname"] == dnsname]
    assert edge.api("DELETE", f"/socket/{web['socket_id']}", token=token).status in (200, 204)
    wait_for("the leftover swept", lambda: ghost["socket_id"] not in
             {s["socket_id"] for s in account_sockets(edge, account)})
    renamed = wait_for("web's vanished socket recreated",
                       lambda: (lambda d: d if d and d != dnsname else None)(
                           annotations(cluster.get("web")).get(DNSNAME)))
    wait_for("web answering on its new name", lambda: answered(edge, renamed))


def _recorded(socket):
    """The annotations the previous release wrote on a Service it exposed."""
    return {DNSNAME: socket["dnsname"], SOCKET_ID: socket["socket_id"], TUNNEL_ID: socket["tunnels"][0]["tunnel_id"]}


def _calls(controller, call):
    """How many times this controller made an API call (all statuses), from its /metrics."""
    total = 0.0
    for line in controller.metrics().splitlines():
        if line.startswith(f'mysocketd_api_requests_total{{call="{call}"'):
            total += float(line.rsplit(" ", 1)[1])
    return total

