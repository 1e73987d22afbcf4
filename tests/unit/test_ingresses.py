"""Table tests for Ingress -> route table (lib/ingresses): classes, rules, TLS hosts, default backend."""

import base64

import pytest

from lib import gateways, ingresses

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----\n"


def klass(name, controller=ingresses.CONTROLLER, default=False):
    annotations = {ingresses.DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {"metadata": {"name": name, "annotations": annotations}, "spec": {"controller": controller}}


def ingress(spec=None, annotations=None, name="web", ns="shop"):
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations or {},
                         "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec or {}}


CLASSES = [klass("mysocket"), klass("nginx", "k8s.io/ingress-nginx")]


@pytest.mark.parametrize("ing, classes, ours", [
    (ingress({"ingressClassName": "mysocket"}), CLASSES, True),
    (ingress({"ingressClassName": "nginx"}), CLASSES, False),
    (ingress(annotations={"kubernetes.io/ingress.class": "mysocket"}), CLASSES, True),
    (ingress(annotations={"kubernetes.io/ingress.class": "nginx"}), CLASSES, False),
    (ingress(), CLASSES, False),
    (ingress(), [klass("mysocket", default=True)], True),
    (ingress({"ingressClassName": "nginx"}), [klass("mysocket", default=True), CLASSES[1]], False),
])
def test_which_ingresses_are_ours(ing, classes, ours):
    assert ingresses.is_ours(ing, classes) is ours


def service(name, ports):
    return {"metadata": {"namespace": "shop", "name": name},
            "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": n, "port": p} for n, p in ports]}}


SERVICES = {("shop", "web"): service("web", [("http", 80)]), ("shop", "api"): service("api", [("grpc", 9000),
                                                                                              ("http", 8080)])}


def backend(name, number=None, port_name=None):
    port = {"number": number} if number else {"name": port_name}
    return {"service": {"name": name, "port": port}}


def entries(listener):
    return [(e.hostname, e.match.path_type, e.match.path, [b.key for b in e.action.backends])
            for e in listener.entries]


def test_rules_paths_and_default_backend():
    plan = ingresses.plan(ingress({
        "defaultBackend": backend("web", 80),
        "rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/api", "pathType": "Prefix", "backend": backend("api", port_name="http")},
            {"path": "/api/v1/exact", "pathType": "Exact", "backend": backend("api", 9000)},
            {"path": "/", "pathType": "ImplementationSpecific", "backend": backend("web", 80)}]}},
            {"http": {"paths": [{"path": "/status", "pathType": "Exact", "backend": backend("web", 80)}]}}]}),
        SERVICES, {})
    http, https = plan.listeners
    assert (http.port, http.protocol, https.port, https.protocol, https.certificates) == (80, "HTTP", 443, "HTTPS", ())
    assert entries(http) == [
        ("shop.example.com", "Exact", "/api/v1/exact", ["shop/api:9000"]),
        ("shop.example.com", "PathPrefix", "/api", ["shop/api:8080"]),
        ("shop.example.com", "PathPrefix", "/", ["shop/web:80"]),
        ("", "Exact", "/status", ["shop/web:80"]),
        ("", "PathPrefix", "/", ["shop/web:80"]),                 # the default backend: anything else
    ]
    assert entries(https) == entries(http)
    assert {t.key for t in plan.targets} == {"shop/api:9000", "shop/api:8080", "shop/web:80"}
    assert plan.problems == ()


@pytest.mark.parametrize("be, words", [
    (backend("missing", 80), "Service missing does not exist"),
    (backend("web", 81), "has no port 81"),
    (backend("api", port_name="metrics"), "has no port metrics"),
    ({"resource": {"apiGroup": "x.io", "kind": "Bucket", "name": "b"}}, "resource backend"),
])
def test_unresolved_backends_answer_500_and_say_why(be, words):
    plan = ingresses.plan(ingress({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                                   "backend": be}]}}]}), SERVICES, {})
    assert entries(plan.listeners[0]) == [("", "PathPrefix", "/", [""])]
    assert len(plan.problems) == 1 and words in plan.problems[0]


def tls_secret():
    return {"data": {"tls.crt": base64.b64encode(CERT.encode()).decode(),
                     "tls.key": base64.b64encode(KEY.encode()).decode()}}


def test_tls_hosts_get_their_secret_and_the_rest_the_edges_certificate():
    spec = {"tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"},
                    {"hosts": ["locked.example.com"], "secretName": "locked"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                                        "backend": backend("web", 80)}]}},
                      {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend("api", 8080)}]}}]}
    plan = ingresses.plan(ingress(spec), SERVICES, {("shop", "shop-tls"): tls_secret(),
                                                    ("shop", "locked"): gateways.UNREADABLE})
    names = [(lis.name, lis.port, lis.hostname, len(lis.certificates)) for lis in plan.listeners]
    assert names == [("http", 80, "", 0), ("https-0-shop.example.com", 443, "shop.example.com", 1),
                     ("https", 443, "", 0)]
    assert entries(plan.listeners[1]) == [("shop.example.com", "PathPrefix", "/", ["shop/web:80"]),
                                          ("shop.example.com", "PathPrefix", "/", ["shop/api:8080"])]
    assert plan.listeners[1].certificates[0].cert_pem == CERT
    assert any("may not read Secret locked" in p for p in plan.problems)
    table = plan.table
    assert [lis["name"] for lis in table["listeners"]] == ["http", "https-0-shop.example.com", "https"]


def test_load_balancer_status():
    assert ingresses.load_balancer_status([{"type": "IPAddress", "value": "127.1.0.2"},
                                           {"type": "Hostname", "value": "a.edge.localhost"}]) == {
        "loadBalancer": {"ingress": [{"ip": "127.1.0.2"}, {"hostname": "a.edge.localhost"}]}}
