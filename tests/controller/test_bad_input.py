"""What a user can get wrong: each gives one clear message, and nothing else is lost."""

import json
import re

import pytest

from devcluster.stack import account_sockets, wait_for
from lib.services import DNSNAME

ENABLED = {"mysocket.io/enabled": "true"}
NOISE = "".join(chr(33 + (i * 7) % 90) for i in range(1000))

# (Service name, annotations, spec, the annotation the Warning must name)
CASES = [
    ("enabled-yes", {"mysocket.io/enabled": "yes"}, {}, "mysocket.io/enabled"),
    ("port-missing", {**ENABLED, "mysocket.io/port": "grpc"}, {}, "mysocket.io/port"),
    ("type-udp", {**ENABLED, "mysocket.io/type": "udp"}, {}, "mysocket.io/type"),
    ("type-noise", {**ENABLED, "mysocket.io/type": NOISE}, {}, "mysocket.io/type"),
    ("emails", {**ENABLED, "mysocket.io/cloud-auth-emails": "alice, bob@"}, {}, "mysocket.io/cloud-auth-emails"),
    ("domains", {**ENABLED, "mysocket.io/cloud-auth-domains": "-bad-.com"}, {}, "mysocket.io/cloud-auth-domains"),
    ("secret-name", {**ENABLED, "mysocket.io/protected-secret": "UPPER_case"}, {}, "mysocket.io/protected-secret"),
    ("secret-absent", {**ENABLED, "mysocket.io/protected-secret": "nope"}, {}, "mysocket.io/protected-secret"),
    ("retain", {**ENABLED, "mysocket.io/retain": "forever"}, {}, "mysocket.io/retain"),
    ("headless", ENABLED, {"clusterIP": "None"}, "mysocket.io/enabled"),
]


def test_each_invalid_annotation_is_a_warning_and_the_others_carry_on(cluster, standins, controller, edge, account,
                                                                      control_plane):
    for name, annotations, spec, _ in CASES:
        cluster.service(name, annotations=annotations, **spec)
    control_plane.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Service
metadata: {{name: external, namespace: {cluster.ns}, annotations: {{mysocket.io/enabled: "true"}}}}
spec: {{type: ExternalName, externalName: example.com}}
""")
    cluster.service("good", annotations=ENABLED)
    standins.for_service(cluster.ns, "good")

    dnsname = wait_for("the good Service exposed", lambda: cluster.get("good")["metadata"]["annotations"].get(DNSNAME))
    wait_for("the good Service answering", lambda: edge.get(dnsname)[0] == 200)
    for name, _, _, annotation in CASES + [("external", None, None, "mysocket.io/enabled")]:
        warnings = wait_for(f"a Warning on {name}",
                            lambda: [m for t, r, m in cluster.events(name) if t == "Warning"
                                     and r == "InvalidAnnotation"])
        assert any(m.startswith(annotation) for m in warnings), (name, warnings)
        assert all(len(m) < 300 for m in warnings)
    assert [s["dnsname"] for s in account_sockets(edge, account)] == [dnsname]
    assert controller.proc.poll() is None


def test_a_service_with_no_ports_cannot_be_created_so_it_is_never_seen(cluster):
    """The API server itself refuses a ClusterIP Service without ports; nothing for us to handle."""
    with pytest.raises(Exception, match="ports: Required value"):
        cluster.service("noports", ports=(), annotations=ENABLED)


def test_a_typo_on_a_working_service_keeps_its_tunnel(cluster, standins, controller, edge):
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    dnsname = wait_for("exposed", lambda: cluster.get("web")["metadata"]["annotations"].get(DNSNAME))
    wait_for("answering", lambda: edge.get(dnsname)[0] == 200)
    cluster.annotate("web", **{"mysocket.io/type": "htp"})
    wait_for("the Warning", lambda: any(r == "InvalidAnnotation" for _, r, _ in cluster.events("web")))
    assert edge.get(dnsname)[0] == 200
    assert len(controller.ssh_children()) == 1


def test_wrong_password_is_not_ready_and_logged_once_per_backoff_step(make_controller, account, edge):
    account.password = "wrong-" + account.password
    c = make_controller(start=False)
    c.start(wait_ready=False)
    status, reason = wait_for("a /readyz answer", lambda: (lambda r: r if r[0] else None)(c.http("/readyz")))
    assert status == 503
    wait_for("the reason", lambda: "refused the e-mail and password" in c.http("/readyz")[1])

    def attempts():
        return [r for r in c.log_records() if r.get("message", "").startswith("cannot log in")]

    wait_for("three attempts", lambda: len(attempts()) >= 3, timeout=30)
    # One line per attempt, and each attempt waits twice as long as the one before: never a hot loop.
    delays = [re.search(r"trying again in (\d+)s", r["message"]).group(1) for r in attempts()[:3]]
    assert delays == ["1", "2", "4"], delays
    assert all(r["level"] == "ERROR" for r in attempts())
    assert c.proc.poll() is None


@pytest.mark.parametrize("problem, words", [
    ("missing", "no private key at"), ("empty", "is empty"), ("garbage", "OpenSSH cannot use the private key"),
    ("unreadable", "cannot read the private key")])
def test_an_unusable_private_key_is_one_clear_line(make_controller, problem, words, tmp_path):
    c = make_controller(start=False, extra_args=["--private-key", str(tmp_path / "key")])
    if problem == "empty":
        (tmp_path / "key").write_text("")
    elif problem == "garbage":
        (tmp_path / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n")
    elif problem == "unreadable":
        (tmp_path / "key").mkdir()
    c.start(wait_ready=False)
    assert c.proc.wait(20) == 2
    errors = [r["message"] for r in c.log_records() if r.get("level") == "ERROR"]
    assert len(errors) == 1 and words in errors[0], c.log_text()


def test_an_api_that_answers_html_is_named(make_controller, tmp_path):
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = make_controller(start=False, extra_args=["--api-url", f"http://127.0.0.1:{server.server_port}/"])
        c.start(wait_ready=False)
        wait_for("the message", lambda: "got text/html: is --api-url the Mysocket API?" in c.http("/readyz")[1])
    finally:
        server.shutdown()
        server.server_close()


def test_no_secret_reaches_the_log_at_any_level(cluster, standins, make_controller, edge, account, control_plane):
    cluster.protected_secret("web-auth", "alice", "protected-pass-42")
    c = make_controller(log_level="DEBUG")
    cluster.service("web", annotations={**ENABLED, "mysocket.io/protected-secret": "web-auth"})
    standins.for_service(cluster.ns, "web")
    wait_for("exposed", lambda: cluster.get("web")["metadata"]["annotations"].get(DNSNAME))
    cluster.delete("web")
    wait_for("cleaned up", lambda: cluster.get("web") is None)
    c.stop()
    text = c.log_text()
    key_lines = [line for line in account.private_key.read_text().splitlines() if "-----" not in line]
    assert account.password not in text
    assert "protected-pass-42" not in text
    assert not any(line in text for line in key_lines)
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", text), "a JWT in the log"
    [user] = json.loads(c.kubeconfig.read_text())["users"]
    assert user["user"]["token"] not in text
