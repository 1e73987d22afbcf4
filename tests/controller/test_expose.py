"""The product, end to end: annotate a Service, reach its pods through the edge, take it away."""

import signal

import psutil

from devcluster.stack import account_sockets, annotations, answered, exposed, wait_for
from lib.services import DNSNAME, FINALIZER, SOCKET_ID, TUNNEL_ID

ENABLED = {"mysocket.io/enabled": "true"}


def served_by(edge, dnsname, requests=30):
    return {answered(edge, dnsname) for _ in range(requests)}


def test_annotated_service_is_served_by_its_pods_through_the_edge(cluster, standins, controller, edge, account):
    cluster.service("web")
    pods = standins.for_service(cluster.ns, "web", count=3)
    cluster.annotate("web", **ENABLED)
    dnsname = exposed(cluster, edge, "web")

    assert served_by(edge, dnsname, 60) == {f"Server: {p.name}\n" for p in pods}
    svc = cluster.get("web")
    assert FINALIZER in svc["metadata"]["finalizers"]
    [remote] = account_sockets(edge, account)
    assert (remote["socket_id"], remote["dnsname"]) == (annotations(svc)[SOCKET_ID], dnsname)
    assert remote["name"] == f"mysocketd/{controller.cluster_name}/{cluster.ns}/web"
    # One tunnel, this replica's own, tagged with its owner (lib/replicas.TunnelOwner).
    [tunnel] = remote["tunnels"]
    assert tunnel["owner"].startswith(f"{controller.cluster_name}/{cluster.ns}/web/") and tunnel["connected"]
    assert TUNNEL_ID not in annotations(svc)
    reasons = wait_for("SocketCreated and TunnelUp Events",
                       lambda: {"SocketCreated", "TunnelUp"} <= {r for _, r, _ in cluster.events("web")})
    assert reasons
    assert len(controller.ssh_children()) == 1

    # What a kubectl user sees: the public name, who serves it and on which edge node, and the Events.
    expected = f"1 tunnel connected; this cluster: 1 ({tunnel['owner'].split('/')[3]}); " \
               f"edge node: {tunnel['tunnel_server']}"
    said = wait_for("served-by on the Service saying so", lambda: (lambda s: s if s == expected else None)(
        annotations(cluster.get("web")).get("mysocket.io/served-by")), timeout=40)
    described = cluster.kubectl("describe", "service", "web").stdout
    for line in (f"mysocket.io/dnsname: {dnsname}", f"mysocket.io/served-by: {said}", "TunnelUp", "SocketCreated"):
        assert line in described, (line, described)


def test_traffic_follows_a_port_change(cluster, standins, controller, edge):
    cluster.service("multi", ports=((8000, "http"), (9090, "admin")))
    [http] = standins.for_service(cluster.ns, "multi", port=8000)
    [admin] = standins.for_service(cluster.ns, "multi", port=9090)
    cluster.annotate("multi", **ENABLED)
    dnsname = exposed(cluster, edge, "multi")
    assert served_by(edge, dnsname, 5) == {f"Server: {http.name}\n"}

    cluster.annotate("multi", **{"mysocket.io/port": "admin"})
    wait_for("traffic on the admin port", lambda: answered(edge, dnsname) == f"Server: {admin.name}\n")
    assert served_by(edge, dnsname, 5) == {f"Server: {admin.name}\n"}
    assert annotations(cluster.get("multi"))[DNSNAME] == dnsname      # same socket, same name
    wait_for("one ssh child", lambda: len(controller.ssh_children()) == 1)


def test_removing_the_annotation_deletes_the_socket_and_lets_go(cluster, standins, controller, edge, account):
    cluster.service("web")
    standins.for_service(cluster.ns, "web")
    cluster.annotate("web", **ENABLED)
    dnsname = exposed(cluster, edge, "web")

    cluster.annotate("web", **{"mysocket.io/enabled": None})
    wait_for("the socket deleted on the edge", lambda: account_sockets(edge, account) == [])
    svc = wait_for("finalizer and annotations removed",
                   lambda: (lambda s: s if FINALIZER not in (s["metadata"].get("finalizers") or [])
                            and DNSNAME not in annotations(s) else None)(cluster.get("web")))
    assert SOCKET_ID not in annotations(svc) and TUNNEL_ID not in annotations(svc)
    assert edge.get(dnsname)[0] == 404
    wait_for("no ssh child", lambda: controller.ssh_children() == [])
    assert "SocketDeleted" in {r for _, r, _ in cluster.events("web")}


def test_deleting_the_service_deletes_the_socket(cluster, standins, controller, edge, account):
    cluster.service("web")
    standins.for_service(cluster.ns, "web")
    cluster.annotate("web", **ENABLED)
    exposed(cluster, edge, "web")

    cluster.delete("web")
    wait_for("the Service gone (finalizer removed)", lambda: cluster.get("web") is None)
    wait_for("the socket deleted on the edge", lambda: account_sockets(edge, account) == [])
    wait_for("no ssh child", lambda: controller.ssh_children() == [])


def test_restart_adopts_the_same_socket(cluster, standins, make_controller, edge, account):
    first = make_controller()
    cluster.service("web")
    standins.for_service(cluster.ns, "web")
    cluster.annotate("web", **ENABLED)
    dnsname = exposed(cluster, edge, "web")
    socket_id = annotations(cluster.get("web"))[SOCKET_ID]

    assert first.stop() == 0                                    # SIGTERM: exit 0 ...
    assert first.ssh_children() == [] and len(account_sockets(edge, account)) == 1   # ... nothing remote deleted
    wait_for("the edge to let go of the tunnel", lambda: edge.get(dnsname)[0] == 502)

    make_controller(cluster_name=first.cluster_name)
    wait_for("traffic again", lambda: answered(edge, dnsname))
    [remote] = account_sockets(edge, account)
    assert (remote["socket_id"], remote["dnsname"]) == (socket_id, dnsname)
    assert annotations(cluster.get("web"))[SOCKET_ID] == socket_id


def test_ssh_children_left_by_a_crash_are_ended_by_the_next_run(cluster, standins, make_controller, edge, tmp_path):
    first = make_controller(workdir=tmp_path / "pod")
    cluster.service("web")
    standins.for_service(cluster.ns, "web")
    cluster.annotate("web", **ENABLED)
    dnsname = exposed(cluster, edge, "web")
    [orphan] = first.ssh_children()
    first.kill()
    assert orphan.is_running()

    second = make_controller(workdir=tmp_path / "pod", cluster_name=first.cluster_name)
    assert not psutil.pid_exists(orphan.pid) or orphan.status() == psutil.STATUS_ZOMBIE
    wait_for("traffic through the new child", lambda: answered(edge, dnsname))
    assert len(second.ssh_children()) == 1


def test_a_killed_ssh_child_comes_back(cluster, standins, controller, edge):
    cluster.service("web")
    standins.for_service(cluster.ns, "web")
    cluster.annotate("web", **ENABLED)
    dnsname = exposed(cluster, edge, "web")
    wait_for("the tunnel reported up", lambda: "TunnelUp" in {r for _, r, _ in cluster.events("web")})
    [child] = controller.ssh_children()

    child.send_signal(signal.SIGKILL)
    wait_for("a new ssh child", lambda: [c for c in controller.ssh_children() if c.pid != child.pid])
    wait_for("traffic again", lambda: answered(edge, dnsname))
    wait_for("the restart counted", lambda: "mysocketd_ssh_restarts_total 1.0" in controller.metrics())
    # TunnelDown if it had been up a while, TunnelFailed (backed off) if it died soon after coming up.
    wait_for("an Event saying it was killed", lambda: [m for _, r, m in cluster.events("web")
                                                     if r in ("TunnelDown", "TunnelFailed") and "signal 9" in m])


def test_load_balancer_class_shows_the_public_name_as_external_ip(cluster, standins, controller, edge):
    cluster.service("lb", type="LoadBalancer", loadBalancerClass="mysocket.io/tunnel")
    standins.for_service(cluster.ns, "lb")
    dnsname = exposed(cluster, edge, "lb")
    ingress = wait_for("status.loadBalancer.ingress",
                       lambda: cluster.get("lb")["status"].get("loadBalancer", {}).get("ingress"))
    assert ingress == [{"hostname": dnsname}]
    table = cluster.kubectl("get", "service", "lb").stdout
    assert dnsname in table


def test_leftover_sockets_of_this_cluster_are_deleted(cluster, make_controller, edge, account):
    token = edge.login(account.email, account.password)
    c = make_controller(start=False)
    names = {"mine": f"mysocketd/{c.cluster_name}/{cluster.ns}/ghost",
             "other cluster": f"mysocketd/elsewhere/{cluster.ns}/ghost",
             "other namespace": f"mysocketd/{c.cluster_name}/not-mine/ghost",
             "previous release, not inherited": f"k8s/{c.cluster_name}/{cluster.ns}/ghost",
             "original controller": f"k8s {cluster.ns}.ghost", "a user's": "my laptop"}
    for name in names.values():
        assert edge.api("POST", "/connect", {"name": name}, token=token).status == 200
    c.start()
    wait_for("the leftover deleted", lambda: names["mine"] not in {s["name"] for s in account_sockets(edge, account)})
    assert {s["name"] for s in account_sockets(edge, account)} == set(names.values()) - {names["mine"]}


def test_retained_socket_keeps_its_name_across_unexpose(cluster, standins, controller, edge, account):
    cluster.service("web", annotations={**ENABLED, "mysocket.io/retain": "true"})
    standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")

    cluster.annotate("web", **{"mysocket.io/enabled": "false"})
    wait_for("finalizer removed", lambda: FINALIZER not in (cluster.get("web")["metadata"].get("finalizers") or []))
    wait_for("no ssh child", lambda: controller.ssh_children() == [])
    assert [s["dnsname"] for s in account_sockets(edge, account)] == [dnsname]
    assert edge.get(dnsname)[0] == 502

    cluster.annotate("web", **{"mysocket.io/enabled": "true"})
    assert exposed(cluster, edge, "web") == dnsname
    assert len(account_sockets(edge, account)) == 1


def test_protected_socket_asks_for_the_secret_credentials(cluster, standins, controller, edge):
    cluster.protected_secret("web-auth", "alice", "wonderland")
    cluster.service("web", annotations={**ENABLED, "mysocket.io/protected-secret": "web-auth"})
    standins.for_service(cluster.ns, "web")
    dnsname = wait_for("dnsname", lambda: annotations(cluster.get("web")).get(DNSNAME))
    import base64
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
    wait_for("a pod answering with credentials", lambda: edge.get(dnsname, headers=auth)[0] == 200)
    assert edge.get(dnsname)[0] == 401


def test_dry_run_changes_nothing(cluster, standins, make_controller, edge, account):
    c = make_controller(extra_args=["--dry-run"])
    cluster.service("web", annotations=ENABLED)
    wait_for("the dry-run line", lambda: "dry-run: would expose" in c.log_text())
    svc = cluster.get("web")
    assert account_sockets(edge, account) == []
    assert not (svc["metadata"].get("finalizers") or []) and DNSNAME not in annotations(svc)
    assert c.ssh_children() == [] and cluster.events("web", component="mysocketd") == []


def test_its_own_writes_do_not_start_a_reconcile_loop(cluster, standins, controller, edge):
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    exposed(cluster, edge, "web")
    wait_for("the tunnel up", lambda: "mysocketd_tunnels_up 1.0" in controller.metrics())
    import time
    time.sleep(3)          # let the MODIFIED events of its own writes come back through the watch

    def calls():
        return sum(float(line.rsplit(" ", 1)[1]) for line in controller.metrics().splitlines()
                   if line.startswith(("mysocketd_api_requests_total{", "mysocketd_reconcile_duration_seconds_count")))

    before, version = calls(), cluster.get("web")["metadata"]["resourceVersion"]
    time.sleep(5)
    assert calls() == before, "Mysocket API calls or reconciles while nothing changed"
    assert cluster.get("web")["metadata"]["resourceVersion"] == version, "the Service was written again"


def test_host_key_trusted_on_first_use_then_enforced(cluster, standins, make_controller, edge, tmp_path):
    c = make_controller()
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    exposed(cluster, edge, "web")
    recorded = (c.state_dir / "known_hosts").read_text()
    assert edge.known_hosts_line().split()[2] in recorded
    # The fingerprint is logged by the loop's 0.25 s tick, which may come after the first 200: wait for it.
    wait_for("the fingerprint logged as trusted on first use",
             lambda: any("trusted on first use" in r.get("message", "") for r in c.log_records()))


def test_a_given_known_hosts_is_checked_strictly(cluster, standins, make_controller, edge, tmp_path):
    from edge.testing import ssh_keygen
    impostor = ssh_keygen(tmp_path / "impostor").split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{edge.ssh_host}]:{edge.ssh_port} {impostor[0]} {impostor[1]}\n")
    first = make_controller(extra_args=["--known-hosts", str(wrong)])
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    wait_for("a TunnelFailed Event about the host key",
             lambda: [m for _, r, m in cluster.events("web") if r == "TunnelFailed" and "host key" in m])
    dnsname = annotations(cluster.get("web"))[DNSNAME]
    assert edge.get(dnsname)[0] == 502
    assert first.stop() == 0

    right = tmp_path / "known_hosts_right"
    right.write_text(edge.known_hosts_line() + "\n")
    make_controller(extra_args=["--known-hosts", str(right)], cluster_name=first.cluster_name)
    wait_for("traffic with the right host key", lambda: answered(edge, dnsname))
