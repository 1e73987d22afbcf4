"""What mysocketd reports is what is true on the wire (issue 15)."""

import http.server
import json
import socket
import threading
import uuid

import pytest

from devcluster.controller import Account, ControllerProcess
from devcluster.netns import add_cluster_ip
from devcluster.stack import account_sockets, answered, exposed, wait_for
from edge.testing import EdgeProcess

ENABLED = {"mysocket.io/enabled": "true"}


@pytest.fixture
def silent_ssh_port():
    """A port that accepts TCP connections and never says a word (a black-holed edge)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_an_edge_that_accepts_and_never_answers_is_never_up(cluster, make_controller, silent_ssh_port):
    c = make_controller(extra_args=["--ssh-port", str(silent_ssh_port)])
    cluster.service("web", annotations=ENABLED)
    failed = wait_for("a TunnelFailed Event", lambda: [m for _, r, m in cluster.events("web") if r == "TunnelFailed"],
                      timeout=60)
    assert "did not answer" in failed[0], failed           # ssh: Connection timed out during banner exchange
    assert "TunnelUp" not in {r for _, r, _ in cluster.events("web")}
    assert "mysocketd_tunnels_up 0.0" in c.metrics()


def test_a_failing_login_stops_no_supervision_and_a_fixed_secret_is_used_at_once(
        cluster, standins, controller_kubeconfig, namespace, tmp_path):
    """Tokens last 4 s and the sweep calls the API every second, so a wrong password in the mounted
    files bites within seconds."""
    with EdgeProcess(tmp_path / "edge", admin=True, token_lifetime=4) as edge:
        account = Account.register(edge, tmp_path / "account")
        with ControllerProcess(tmp_path / "c", kubeconfig=controller_kubeconfig, edge=edge, account=account,
                               namespace=namespace, cluster_name="cred" + uuid.uuid4().hex[:6],
                               extra_args=["--resync-seconds", "1"]) as c:
            cluster.service("web", annotations=ENABLED)
            [pod] = standins.for_service(cluster.ns, "web")
            dnsname = exposed(cluster, edge, "web")

            (c.secret_dir / "password").write_text("not-the-password\n")      # a bad rotation of the Secret
            wait_for("the next login refused", lambda: "refused the e-mail and password" in c.http("/readyz")[1],
                     timeout=30)
            [child] = c.ssh_children()
            child.kill()
            wait_for("a new child while the login still fails",
                     lambda: [p for p in c.ssh_children() if p.pid != child.pid])
            wait_for("traffic again", lambda: answered(edge, dnsname) == f"Server: {pod.name}\n")
            assert c.http("/readyz")[0] == 503

            wait_for("a backoff of 8 s", lambda: any("trying again in 8s" in r.get("message", "")
                                                     for r in c.log_records()), timeout=30)
            (c.secret_dir / "password").write_text(account.password + "\n")   # the Secret fixed
            # Well before the 8 s backoff is over: the change itself is the reason to try again.
            wait_for("logged in with the fixed Secret", lambda: c.http("/readyz")[0] == 200, timeout=6)


def test_a_kept_tunnel_never_serves_the_service_that_gets_its_old_clusterip(cluster, standins, controller, edge):
    cluster.service("web", annotations=ENABLED)
    [web_pod] = standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")
    old_ip = cluster.get("web")["spec"]["clusterIP"]

    cluster.annotate("web", **{"mysocket.io/type": "htp"})          # a typo: the last valid options go on
    wait_for("the InvalidAnnotation Warning", lambda: "InvalidAnnotation" in {r for _, r, _ in cluster.events("web")})
    assert answered(edge, dnsname) == f"Server: {web_pod.name}\n"
    # Then web lets its ClusterIP go, and another Service is given it.
    cluster.kubectl("patch", "service", "web", "--type=merge", "-p", json.dumps(
        {"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": None, "clusterIPs": None}}))
    standins.stop(web_pod)
    cluster.service("other", clusterIP=old_ip)
    [other_pod] = standins.for_service(cluster.ns, "other")
    wait_for("the TunnelStopped Warning", lambda: "TunnelStopped" in {r for _, r, _ in cluster.events("web")})
    answers = [edge.get(dnsname) for _ in range(10)]
    assert all(status == 502 for status, _ in answers), answers
    assert not any(other_pod.name in body for _, body in answers)


def test_only_true_exposes_and_an_unknown_value_deletes_nothing(cluster, standins, make_controller, edge, account):
    c = make_controller(extra_args=["--resync-seconds", "1"])
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    dnsname = exposed(cluster, edge, "web")
    [socket] = account_sockets(edge, account)

    cluster.annotate("web", **{"mysocket.io/enabled": "no"})
    wait_for("the name no longer served", lambda: edge.get(dnsname)[0] == 502)
    message = [m for t, r, m in cluster.events("web") if (t, r) == ("Warning", "InvalidAnnotation")]
    assert message and 'must be "true" or "false"' in message[0]
    sweeps = _calls(c, "list_sockets")
    wait_for("three more sweeps", lambda: _calls(c, "list_sockets") >= sweeps + 3)
    assert [s["socket_id"] for s in account_sockets(edge, account)] == [socket["socket_id"]]
    assert c.ssh_children() == []

    cluster.annotate("web", **{"mysocket.io/enabled": "true"})
    assert exposed(cluster, edge, "web") == dnsname                  # the same name again


def test_the_last_valid_options_survive_a_restart(cluster, standins, make_controller, edge):
    first = make_controller()
    cluster.service("web", ports=((8000, "http"), (9090, "admin")),
                    annotations={**ENABLED, "mysocket.io/port": "admin"})
    standins.for_service(cluster.ns, "web", port=8000)
    [admin] = standins.for_service(cluster.ns, "web", port=9090)
    dnsname = exposed(cluster, edge, "web")
    cluster.annotate("web", **{"mysocket.io/port": "grpc"})
    wait_for("the InvalidAnnotation Warning", lambda: "InvalidAnnotation" in {r for _, r, _ in cluster.events("web")})
    assert first.stop() == 0
    make_controller(cluster_name=first.cluster_name)
    wait_for("served again on the last valid port", lambda: answered(edge, dnsname) == f"Server: {admin.name}\n")


def _calls(controller, call):
    return sum(float(line.rsplit(" ", 1)[1]) for line in controller.metrics().splitlines()
               if line.startswith(f'mysocketd_api_requests_total{{call="{call}"'))


@pytest.mark.parametrize("case", ["no opt-in label", "no RBAC in the namespace"])
def test_a_secret_is_used_only_if_it_opts_in_and_mysocketd_may_read_it(cluster, standins, controller, edge, account,
                                                                        control_plane, case):
    if case == "no opt-in label":                   # a database's credentials, say
        cluster.protected_secret("db", "admin", "s3cret-db-password", opt_in=False)
        words = 'does not opt in: label it mysocket.io/protected-secret="true"'
    else:
        control_plane.kubectl("create", "secret", "generic", "db", "-n", cluster.ns,
                              "--from-literal=username=admin", "--from-literal=password=s3cret-db-password")
        control_plane.kubectl("label", "secret", "db", "-n", cluster.ns, "mysocket.io/protected-secret=true")
        words = "cannot be read by mysocketd: grant it `get` on Secrets in this namespace"
    cluster.service("web", annotations={**ENABLED, "mysocket.io/protected-secret": "db"})
    standins.for_service(cluster.ns, "web")
    message = wait_for("the Warning", lambda: [m for t, r, m in cluster.events("web")
                                                if (t, r) == ("Warning", "InvalidAnnotation")])
    assert words in message[0], message
    assert account_sockets(edge, account) == []       # never exposed unprotected, never sent to the edge
    assert "s3cret-db-password" not in controller.log_text()


def test_the_apps_own_502_never_replaces_a_working_tunnel(cluster, make_controller, edge):
    c = make_controller(extra_args=["--probe-url", f"http://{edge.host}:{edge.http_port}/"])
    svc = cluster.service("web", annotations=ENABLED)
    ip, probes = svc["spec"]["clusterIP"], []

    class BadGateway(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            probes.append(self.headers.get("User-Agent", ""))
            self.send_response(502)                       # the app's own, with no Mysocket-Edge header
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    add_cluster_ip(ip)
    server = http.server.ThreadingHTTPServer((ip, 8000), BadGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_for("three probes through the tunnel (10 s apart)",
                 lambda: sum("python-requests" in ua for ua in probes) >= 3, timeout=60)
        assert "TunnelStale" not in {r for _, r, _ in cluster.events("web")}
        assert "mysocketd_ssh_restarts_total 0.0" in c.metrics()
    finally:
        server.shutdown()
        server.server_close()


def test_the_serving_condition_follows_the_endpoints_and_goes_with_the_exposure(cluster, standins, controller, edge):
    """No ready endpoint: a Warning and status condition mysocket.io/Serving False; disabled: the condition
    goes too, so a Service mysocketd no longer serves says nothing about serving."""
    svc = cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    exposed(cluster, edge, "web")
    cluster.cp.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "web-standin", "namespace": cluster.ns, "labels": {"kubernetes.io/service-name": "web"}},
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [{"addresses": [svc["spec"]["clusterIP"]], "conditions": {"ready": False}}]}))

    def condition():
        return [(c["status"], c["reason"]) for c in (cluster.get("web").get("status") or {}).get("conditions") or []
                if c["type"] == "mysocket.io/Serving"]

    wait_for("Serving False", lambda: condition() == [("False", "NoReadyEndpoints")])
    cluster.annotate("web", **{"mysocket.io/enabled": "false"})
    wait_for("the socket deleted", lambda: "mysocket.io/dnsname" not in (cluster.get("web")["metadata"].get(
        "annotations") or {}))
    wait_for("the condition gone", lambda: condition() == [])
