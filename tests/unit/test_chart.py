"""charts/mysocketd rendered by the real helm: lint, its values, and no drift from yaml/.

The manifest is what the integration tests prove (every controller test runs
as its ServiceAccount); the chart is what most users install. So the chart,
rendered as release "mysocketd" in namespace "mysocket" with only the edge and
an existing Secret set, must equal the manifest in everything that decides
what mysocketd may do and how it runs: RBAC rules, securityContext, env,
probes, volumes, resources. The uninstall hook's pod and yaml/uninstall/job.yaml
must run like the Deployment's pod. The chart on a real node (install,
upgrade, uninstall) is tests/node/test_chart_on_a_node.py.
"""

import base64

import pytest
import yaml

from devcluster.helm import CHART, Helm, HelmError
from lib import config

REPO_ROOT = CHART.parents[1]
API_URL = "https://api.edge.example.com/"
MINIMAL = {"edge": {"apiUrl": API_URL}, "credentials": {"existingSecret": "mysocketd"}}
ONLY_THE_CHART_SETS = {"MYSOCKETD_LEASE_NAMESPACE", "MYSOCKETD_LEASE_NAME", "MYSOCKETD_DEPLOYMENT"}


@pytest.fixture
def helm(tmp_path):
    return Helm(tmp_path / "helm")


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def rules(role):
    """A Role's rules as a set of (group, resource, resourceNames, verb): the order and grouping do not matter."""
    return {(group, resource, tuple(rule.get("resourceNames") or ()), verb)
            for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}


def pod(workload):
    return workload["spec"]["template"]["spec"]


def container(workload):
    [c] = pod(workload)["containers"]
    return c


def env(workload):
    return {e["name"]: e.get("value") for e in container(workload).get("env") or []}


def flag_defaults():
    """MYSOCKETD_<FLAG> -> the flag's default, as mysocketd reads them."""
    return {"MYSOCKETD_" + a.dest.upper(): a.default for a in config.parser()._actions if a.dest != "help"}


@pytest.fixture
def manifest():
    """yaml/mysocketd.yaml with the one edit the README asks for besides the Secret: the edge."""
    docs = documents(REPO_ROOT / "yaml" / "mysocketd.yaml")
    deployment = by_kind(docs, "Deployment")
    for e in container(deployment)["env"]:
        if e["name"] == "MYSOCKETD_API_URL":
            e["value"] = API_URL
    return docs


@pytest.fixture
def chart(helm):
    return helm.template("mysocketd", "mysocket", MINIMAL)


def test_lint(helm, tmp_path):
    result = helm.run("lint", "--strict", str(CHART), "-f", str(helm.values_file(MINIMAL)))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("values, words", [
    ({}, "set edge.apiUrl to the API URL of your edge"),
    ({"edge": {"apiUrl": API_URL}}, "set credentials.existingSecret"),
    ({"edge": {"apiUrl": API_URL}, "credentials": {"email": "a@b.c", "password": "pw"}},
     "set credentials.existingSecret"),
    ({**MINIMAL, "edge": {"apiUrl": "api.edge.example.com"}}, "/edge/apiUrl"),
    ({**MINIMAL, "replicas": 3}, "additional properties 'replicas' not allowed"),
    ({**MINIMAL, "clusterName": "a/b"}, "/clusterName"),
])
def test_a_newcomers_mistakes_in_values_say_what_to_set(helm, values, words):
    with pytest.raises(HelmError) as failed:
        helm.template("mysocketd", "mysocket", values)
    assert words in failed.value.stderr


def test_the_same_names_and_objects_as_the_manifest(manifest, chart):
    wanted = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in manifest
              if d["kind"] not in ("Namespace", "Secret")}       # helm installs into a namespace; Secret: existing
    installed = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in chart
                 if "helm.sh/hook" not in (d["metadata"].get("annotations") or {})
                 and "grafana_dashboard" not in d["metadata"]["labels"]}   # Grafana's: the chart's alone
    assert installed == wanted


def test_the_grafana_dashboards_and_the_service_monitor(helm, chart):
    """The dashboards (charts/mysocketd/dashboards/) reach Grafana's sidecar verbatim; the ServiceMonitor is
    off by default, and when on, it selects the Service that selects the Deployment's pods on :8080."""
    board = by_kind(chart, "ConfigMap", "mysocketd-grafana-dashboards")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (CHART / "dashboards").glob("*.json")}
    assert set(files) == {"edge.json", "mysocketd.json"}
    assert {k: v.rstrip("\n") for k, v in board["data"].items()} == {k: v.rstrip("\n") for k, v in files.items()}
    assert not [d for d in chart if d["kind"] == "ServiceMonitor"]

    docs = helm.template("mysocketd", "mysocket", {**MINIMAL, "serviceMonitor": {"enabled": True, "labels": {
        "release": "kube-prometheus-stack"}}, "grafana": {"dashboards": False}})
    assert not [d for d in docs if "grafana_dashboard" in d["metadata"]["labels"]]
    monitor, service = by_kind(docs, "ServiceMonitor"), by_kind(docs, "Service", "mysocketd-metrics")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= by_kind(docs, "Deployment")["spec"]["template"]["metadata"][
        "labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("health", "/metrics")
    [port] = service["spec"]["ports"]
    assert port["name"] == "health" and port["targetPort"] == "health" == container(
        by_kind(docs, "Deployment"))["ports"][0]["name"]


def test_rbac_rules_equal_the_manifests(manifest, chart):
    for kind, name in (("ClusterRole", "mysocketd"), ("Role", "mysocketd-leader-election")):
        assert rules(by_kind(chart, kind, name)) == rules(by_kind(manifest, kind, name)), kind
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        ours, theirs = by_kind(chart, kind), by_kind(manifest, kind)
        assert (ours["roleRef"], ours["subjects"]) == (theirs["roleRef"], theirs["subjects"]), kind
    assert not any(r[1] == "secrets" for d in chart if d["kind"] in ("ClusterRole", "Role") for r in rules(d))


def test_the_deployment_runs_like_the_manifests(manifest, chart):
    ours, theirs = by_kind(chart, "Deployment"), by_kind(manifest, "Deployment")
    assert ours["spec"]["replicas"] == theirs["spec"]["replicas"]
    for key in ("securityContext", "serviceAccountName", "volumes"):
        assert pod(ours)[key] == pod(theirs)[key], key
    for key in ("securityContext", "livenessProbe", "readinessProbe", "ports", "resources", "volumeMounts",
                "image", "name"):
        assert container(ours).get(key) == container(theirs).get(key), key
    term = pod(ours)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == ours["spec"]["selector"]["matchLabels"]
    assert ours["spec"]["selector"]["matchLabels"].items() <= ours["spec"]["template"]["metadata"]["labels"].items()


def test_the_env_equals_the_manifests_and_names_real_flags(manifest, chart):
    ours, theirs = env(by_kind(chart, "Deployment")), env(by_kind(manifest, "Deployment"))
    extra = {k: v for k, v in ours.items() if k not in theirs}
    assert {k: v for k, v in ours.items() if k in theirs} == theirs
    assert set(extra) == ONLY_THE_CHART_SETS
    defaults = flag_defaults()
    # What only the chart sets is what the manifest gets from the defaults, for this release and namespace.
    assert all(str(defaults[k]) == v for k, v in extra.items()), (extra, defaults)
    assert set(ours) - {"HOME"} <= set(defaults)


@pytest.mark.parametrize("source", ["hook", "yaml/uninstall/job.yaml"])
def test_the_uninstall_runs_like_the_deployment(manifest, chart, source):
    if source == "hook":
        deployment = by_kind(chart, "Deployment")
        job = by_kind(chart, "Job")
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    else:
        deployment = by_kind(manifest, "Deployment")
        job = by_kind(documents(REPO_ROOT / source), "Job")
        assert job["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        [api_url] = [e for e in container(job)["env"] if e["name"] == "MYSOCKETD_API_URL"]
        assert api_url["value"].startswith("REPLACE-ME")
        api_url["value"] = API_URL                       # the same edit as the manifest's, as the file says
    assert container(job)["args"] == ["--uninstall"]
    assert pod(job)["serviceAccountName"] == pod(deployment)["serviceAccountName"]
    assert pod(job)["securityContext"] == pod(deployment)["securityContext"]
    assert pod(job)["restartPolicy"] == "Never"
    for key in ("securityContext", "image"):
        assert container(job)[key] == container(deployment)[key], key
    secret = [v for v in pod(deployment)["volumes"] if "secret" in v]
    assert [v for v in pod(job)["volumes"] if "secret" in v] == secret
    mounts = [m for m in container(deployment)["volumeMounts"] if m["name"] == "secret"]
    assert container(job)["volumeMounts"] == mounts
    # The same edge, identity and scope; only what running the controller needs is the Deployment's alone.
    runs_only = {"MYSOCKETD_LEADER_ELECTION", "MYSOCKETD_STATE_DIR", "HOME", "MYSOCKETD_PROBE_URL"}
    assert env(job) == {k: v for k, v in env(deployment).items() if k not in runs_only}
    labels = pod(job) and job["spec"]["template"]["metadata"]["labels"]
    assert not deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_protected_secret_grants_equal_the_optional_manifest(helm):
    docs = helm.template("mysocketd", "mysocket", {**MINIMAL, "protectedSecretNamespaces": ["shop", "web"]})
    optional = documents(REPO_ROOT / "yaml" / "optional" / "protected-secret-rbac.yaml")
    wanted = rules(by_kind(optional, "Role"))
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "mysocketd-protected-secrets"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["shop", "web"]
    assert all(rules(r) == wanted for r in roles)
    bindings = [d for d in docs
                if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "mysocketd-protected-secrets"]
    binding = by_kind(optional, "RoleBinding")
    assert [(b["roleRef"], b["subjects"]) for b in bindings] == [(binding["roleRef"], binding["subjects"])] * 2


def test_credentials_from_values_make_the_secret(helm, tmp_path):
    values = {"edge": {"apiUrl": API_URL},
              "credentials": {"email": "ops@example.com", "password": "pw", "privateKey": "KEY\n"}}
    docs = helm.template("mysocketd", "mysocket", values)
    secret = by_kind(docs, "Secret")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "email": "ops@example.com", "password": "pw", "privatekey": "KEY\n"}
    [volume] = [v for v in pod(by_kind(docs, "Deployment"))["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"] == "mysocketd"
    assert not [d for d in helm.template("mysocketd", "mysocket", MINIMAL) if d["kind"] == "Secret"]


def test_values_reach_the_deployment(helm):
    values = {**MINIMAL, "image": {"repository": "registry.example/mysocketd", "tag": "9.9", "pullPolicy": "Always"},
              "edge": {"apiUrl": API_URL, "sshHost": "ssh.example.com", "sshPort": 22,
                       "knownHosts": "[ssh.example.com]:22 ssh-ed25519 AAAA", "caCert": "-----BEGIN CERT"},
              "clusterName": "prod-eu", "replicaCount": 3, "probeUrl": "https://{dnsname}/",
              "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
              "extraEnv": [{"name": "MYSOCKETD_LOG_FORMAT", "value": "text"}]}
    docs = helm.template("mysocketd", "mysocket", values)
    deployment = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert (container(deployment)["image"], container(deployment)["imagePullPolicy"]) == \
        ("registry.example/mysocketd:9.9", "Always")
    assert container(deployment)["resources"] == values["resources"]
    assert env(deployment).items() >= {
        "MYSOCKETD_SSH_HOST": "ssh.example.com", "MYSOCKETD_SSH_PORT": "22", "MYSOCKETD_CLUSTER_NAME": "prod-eu",
        "MYSOCKETD_PROBE_URL": "https://{dnsname}/", "MYSOCKETD_LOG_FORMAT": "text",
        "MYSOCKETD_KNOWN_HOSTS": "/etc/mysocketd-edge/known_hosts",
        "REQUESTS_CA_BUNDLE": "/etc/mysocketd-edge/ca.crt"}.items()
    edge = by_kind(docs, "ConfigMap", "mysocketd-edge")
    assert edge["data"] == {"known_hosts": values["edge"]["knownHosts"], "ca.crt": values["edge"]["caCert"]}
    mount = {"name": "edge", "mountPath": "/etc/mysocketd-edge", "readOnly": True}
    assert mount in container(deployment)["volumeMounts"]
    # A name of its own: kube-system's UID is not read, so no rule lets it.
    assert not any(r[1] == "namespaces" and r[3] == "get" for r in rules(by_kind(docs, "ClusterRole")))


def test_a_watched_namespace_gets_a_role_instead_of_cluster_wide_rights(helm, manifest):
    docs = helm.template("mysocketd", "mysocket", {**MINIMAL, "watchNamespace": "shop"})
    assert env(by_kind(docs, "Deployment"))["MYSOCKETD_NAMESPACE"] == "shop"
    manifest_rules = rules(by_kind(manifest, "ClusterRole"))
    identity = {r for r in manifest_rules if r[1] == "namespaces" and r[3] == "get"}
    # Gateways, routes and Ingresses are read cluster-wide: a chart scoped to one namespace has none of them.
    manifest_rules = {r for r in manifest_rules if r[0] not in ("gateway.networking.k8s.io", "networking.k8s.io")
                      and r[1:] != ("namespaces", (), "list") and r[1:] != ("namespaces", (), "watch")}
    assert rules(by_kind(docs, "ClusterRole")) == identity
    role = by_kind(docs, "Role", "mysocketd")
    assert role["metadata"]["namespace"] == "shop" and rules(role) == manifest_rules - identity
    binding = by_kind(docs, "RoleBinding", "mysocketd")
    assert binding["metadata"]["namespace"] == "shop" and binding["subjects"][0]["namespace"] == "mysocket"

    docs = helm.template("mysocketd", "mysocket", {**MINIMAL, "watchNamespace": "shop", "clusterName": "prod"})
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_another_release_name_and_namespace_carry_through(helm):
    docs = helm.template("edge-a", "ops", MINIMAL)
    deployment = by_kind(docs, "Deployment", "edge-a-mysocketd")
    assert env(deployment).items() >= {"MYSOCKETD_LEASE_NAMESPACE": "ops", "MYSOCKETD_LEASE_NAME": "edge-a-mysocketd",
                                       "MYSOCKETD_DEPLOYMENT": "edge-a-mysocketd"}.items()
    assert ("apps", "deployments/scale", ("edge-a-mysocketd",), "patch") in \
        rules(by_kind(docs, "Role", "edge-a-mysocketd-leader-election"))
    assert pod(deployment)["serviceAccountName"] == "edge-a-mysocketd"
    assert all(d["metadata"].get("namespace") in (None, "ops") for d in docs)


def test_the_hook_can_be_turned_off(helm):
    docs = helm.template("mysocketd", "mysocket", {**MINIMAL, "uninstallHook": {"enabled": False}})
    assert not [d for d in docs if d["kind"] == "Job"]
