"""The manifest's ClusterRole is exactly what the controller needs (every other test runs under it)."""

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SA = "system:serviceaccount:mysocket:mysocketd"


def test_cluster_role_is_the_documented_minimum(control_plane, controller_kubeconfig):
    role = json.loads(control_plane.kubectl("get", "clusterrole", "mysocketd", "-o", "json").stdout)
    granted = {(r, v, tuple(rule.get("resourceNames") or ()))
               for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("services", "list", ()), ("services", "watch", ()), ("services", "patch", ()),
                       ("services/status", "patch", ()), ("events", "create", ()), ("events", "patch", ()),
                       ("namespaces", "get", ("kube-system",)),
                       ("endpointslices", "list", ()), ("endpointslices", "watch", ()),
                       # Gateways, routes, Ingresses (lib/routecontroller.py): read, and their status written
                       *{(r, v, ()) for r in ("gatewayclasses", "gateways", "httproutes", "tlsroutes",
                                              "tcproutes", "grpcroutes", "referencegrants", "ingresses",
                                              "ingressclasses",
                                              "namespaces")
                         for v in ("list", "watch")},
                       *{(r + "/status", "patch", ()) for r in ("gatewayclasses", "gateways", "httproutes",
                                                                "tlsroutes", "tcproutes", "grpcroutes",
                                                                "ingresses")}}


@pytest.mark.parametrize("verb, resource, allowed", [
    ("list", "services", "yes"), ("patch", "services", "yes"), ("delete", "services", "no"),
    ("create", "services", "no"), ("list", "secrets", "no"), ("get", "secrets", "no"),
    ("create", "events", "yes"), ("list", "pods", "no"),
    ("update", "leases.coordination.k8s.io -n mysocket", "yes"),
    ("update", "leases.coordination.k8s.io -n default", "no"),
    ("list", "leases.coordination.k8s.io -n mysocket", "yes"),
    ("delete", "leases.coordination.k8s.io -n mysocket", "yes"),
    ("watch", "endpointslices.discovery.k8s.io", "yes"), ("create", "endpointslices.discovery.k8s.io", "no"),
    ("get", "namespaces/kube-system", "yes"), ("get", "namespaces/default", "no"), ("list", "namespaces", "yes"),
    ("patch", "namespaces/default", "no"), ("patch", "gateways.gateway.networking.k8s.io", "no"),
    ("patch", "ingresses.networking.k8s.io", "no"),
    ("create", "configmaps -n mysocket", "yes"), ("update", "configmaps -n mysocket", "no"),
    ("create", "configmaps -n default", "no"),
    ("patch", "deployments.apps/mysocketd --subresource=scale -n mysocket", "yes"),    # --uninstall stops it
    ("patch", "deployments.apps/other --subresource=scale -n mysocket", "no"),
    ("patch", "deployments.apps/mysocketd -n mysocket", "no"),
    ("delete", "deployments.apps/mysocketd -n mysocket", "no"),
])
def test_service_account_can_do_only_that(control_plane, controller_kubeconfig, verb, resource, allowed):
    args = ["auth", "can-i", verb, *resource.split(), f"--as={SA}"]
    if "-n" not in resource:
        args.append("--all-namespaces")
    result = control_plane.kubectl(*args, check=False)
    assert result.stdout.strip() == allowed, (args, result.stdout, result.stderr)


def test_protected_secrets_are_readable_only_where_granted(control_plane, controller_kubeconfig, namespace):
    """yaml/optional/protected-secret-rbac.yaml opens one namespace's Secrets (get only), and no other's."""
    rbac = (REPO_ROOT / "yaml" / "optional" / "protected-secret-rbac.yaml").read_text()
    rbac = rbac.replace("web-namespace", namespace)
    control_plane.kubectl("apply", "-f", "-", input=rbac)
    can = lambda verb, ns: control_plane.kubectl("auth", "can-i", verb, "secrets", "-n", ns, f"--as={SA}",  # noqa: E731
                                                 check=False).stdout.strip()
    assert (can("get", namespace), can("list", namespace), can("get", "default")) == ("yes", "no", "no")
