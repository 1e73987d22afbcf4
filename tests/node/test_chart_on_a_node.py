"""charts/mysocketd and the uninstall on a real node: what a user runs, and what is left afterwards.

The matrix (one node for the module, each test with its own account, release
and namespaces):
- helm install (existing Secret, release "mysocketd" in "mysocket" under Pod
  Security restricted) -> exposed, answering; helm upgrade (one replica, a new
  pod) -> the same public name answers; helm uninstall -> its pre-delete hook
  runs `mysocketd --uninstall` while the Deployment still runs.
- helm install with the credentials in values, one watched namespace, a
  cluster name, a protected-secret grant -> only that namespace, only those
  rights; helm uninstall.
- yaml/mysocketd.yaml, then its Deployment deleted and yaml/uninstall/job.yaml
  run, then the rest deleted.
After every uninstall: no Service carries mysocketd's finalizer, annotations or
load-balancer status, the account has none of this cluster's sockets while
another cluster's socket on it survives, and deleting the namespaces that had
exposed Services completes.
"""

import json
import time
import uuid

import pytest
import yaml

from devcluster import workloads
from devcluster.controller import Account
from devcluster.helm import CHART, Helm
from devcluster.names import dns_label
from devcluster.stack import account_sockets, wait_for
from lib.controller import OURS, SERVING_CONDITION
from lib.services import FINALIZER, has_condition, of_our_class

pytestmark = pytest.mark.timeout(600)

ENABLED = {"mysocket.io/enabled": "true"}
ROLLOUT = 180.0
# What every exposed Service carries; the others of OURS come and go (served-by once counted, last-valid
# once valid, the previous release's tunnel-id removed).
EXPOSED = {FINALIZER, "mysocket.io/dnsname", "mysocket.io/socket-id"}


def apps(namespace, image, lb=False):
    """The demo app (one replica) and its annotated Service in `namespace`; with lb, a LoadBalancer of our class."""
    docs = [d for d in yaml.safe_load_all(workloads.demo_app_manifest(image)) if d["kind"] != "Namespace"]
    for doc in docs:
        doc["metadata"].update(namespace=namespace, name="web")
        if doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = 1
    if lb:
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": namespace},
                     "spec": {"type": "LoadBalancer", "loadBalancerClass": "mysocket.io/tunnel",
                              "selector": {"app": "demo-app"}, "ports": [{"name": "http", "port": 8000}]}})
    return yaml.safe_dump_all(docs)


def service(cp, namespace, name):
    result = cp.kubectl("get", "service", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def dnsname(cp, namespace, name):
    return ((service(cp, namespace, name) or {}).get("metadata", {}).get("annotations") or {}).get(
        "mysocket.io/dnsname")


def marks(cp):
    """{namespace/name: what of mysocketd's is on it} for every Service in the cluster that has any."""
    found = {}
    for svc in json.loads(cp.kubectl("get", "services", "-A", "-o", "json").stdout)["items"]:
        meta = svc["metadata"]
        ours = sorted({k for k in OURS if k in (meta.get("annotations") or {})}
                      | ({FINALIZER} & set(meta.get("finalizers") or [])))
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if of_our_class(svc) and ingress:
            ours.append("status.loadBalancer")
        if has_condition(svc, SERVING_CONDITION):
            ours.append("status.conditions " + SERVING_CONDITION)
        if ours:
            found[f"{meta['namespace']}/{meta['name']}"] = ours
    return found


def exposed_and_answering(installed_edge, cp, namespace, name="web", timeout=120):
    public = wait_for(f"the public name of {namespace}/{name}", lambda: dnsname(cp, namespace, name),
                      timeout=timeout, interval=0.2)
    wait_for(f"{public} to answer", lambda: installed_edge.get(public)[0] == 200, timeout=60)
    return public


def foreign_socket(edge, account, name):
    token = edge.login(account.email, account.password)
    resp = edge.api("POST", "/connect", {"name": name, "socket_type": "http"}, token=token)
    assert resp.status == 200, resp.body
    return resp.body


def delete_namespaces(cp, *names, timeout=120):
    """`kubectl delete namespace` and wait: it completes only if no finalizer is left behind."""
    result = cp.kubectl("delete", "namespace", *names, f"--timeout={timeout}s", check=False, timeout=timeout + 30)
    assert result.returncode == 0, result.stderr
    for name in names:
        gone = cp.kubectl("get", "namespace", name, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr


def image_values(image):
    repository, _, tag = image.rpartition(":")
    return {"repository": repository, "tag": tag}


@pytest.fixture
def account(node_edge, tmp_path):
    return Account.register(node_edge, tmp_path / "account")


@pytest.fixture
def home_namespace(node_cluster):
    """A fresh `mysocket` namespace under Pod Security restricted, as the README has users make it."""
    cp = node_cluster.cp
    if cp.kubectl("get", "namespace", "mysocket", check=False).returncode == 0:
        delete_namespaces(cp, "mysocket")
    cp.kubectl("create", "namespace", "mysocket")
    cp.kubectl("label", "namespace", "mysocket", "pod-security.kubernetes.io/enforce=restricted")
    yield "mysocket"
    cp.kubectl("delete", "namespace", "mysocket", "--wait=false", check=False)


def secret_from_files(cp, namespace, account, tmp_path):
    secret_dir = account.write_secret_dir(tmp_path / "secret")
    cp.kubectl("create", "secret", "generic", "mysocketd", "-n", namespace,
               *[f"--from-file={key}={secret_dir / key}" for key in ("email", "password", "privatekey")])


def test_helm_install_upgrade_and_uninstall(node_cluster, node_edge, account, home_namespace, tmp_path):
    cp, edge = node_cluster.cp, workloads.EdgeAddress.of(node_edge, node_cluster.uplink)
    cluster_uid = json.loads(cp.kubectl("get", "namespace", "kube-system", "-o", "json").stdout)["metadata"]["uid"]
    secret_from_files(cp, home_namespace, account, tmp_path)
    helm = Helm(tmp_path / "helm", cp.kubeconfig)
    values = {"image": image_values(node_cluster.images.mysocketd),
              "edge": {"apiUrl": edge.api_url, "sshPort": edge.ssh_port},
              "credentials": {"existingSecret": "mysocketd"}}
    helm.run("install", "mysocketd", str(CHART), "-n", home_namespace, "-f", str(helm.values_file(values)))
    workloads.rollout(cp, home_namespace, "mysocketd", ROLLOUT)
    pods = workloads.pods(cp, home_namespace, "app.kubernetes.io/name=mysocketd")
    assert len(pods) == 2 and all(workloads.ready(p) for p in pods)

    ns = dns_label("helm-apps")
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-f", "-", input=apps(ns, node_cluster.images.demo_app, lb=True))
    workloads.rollout(cp, ns, "web", ROLLOUT)
    public = exposed_and_answering(node_edge, cp, ns)
    lb_public = exposed_and_answering(node_edge, cp, ns, "lb")
    wait_for("lb's public name in its status", lambda: "status.loadBalancer" in marks(cp).get(f"{ns}/lb", []))
    other = foreign_socket(node_edge, account, f"mysocketd/another-cluster/{ns}/web")
    sockets = account_sockets(node_edge, account)
    assert sorted(s["name"] for s in sockets) == sorted([f"mysocketd/{cluster_uid}/{ns}/web",
                                                         f"mysocketd/{cluster_uid}/{ns}/lb", other["name"]])

    values["replicaCount"] = 1
    helm.run("upgrade", "mysocketd", str(CHART), "-n", home_namespace, "-f", str(helm.values_file(values)))
    workloads.rollout(cp, home_namespace, "mysocketd", ROLLOUT)
    wait_for("one mysocketd pod", lambda: len(workloads.pods(cp, home_namespace,
                                                             "app.kubernetes.io/name=mysocketd")) == 1, timeout=60)
    wait_for(f"{public} to answer after the upgrade", lambda: node_edge.get(public)[0] == 200, timeout=90)
    assert dnsname(cp, ns, "web") == public                      # the same socket: an upgrade keeps the name
    assert sorted(s["socket_id"] for s in account_sockets(node_edge, account)) == \
        sorted(s["socket_id"] for s in sockets)

    before = (marks(cp), sorted(s["name"] for s in account_sockets(node_edge, account)))
    started = time.monotonic()
    result = helm.run("uninstall", "mysocketd", "-n", home_namespace, "--timeout", "5m", timeout=360)
    took = time.monotonic() - started                            # reported, never asserted
    after = (marks(cp), sorted(s["name"] for s in account_sockets(node_edge, account)))
    print(f"\nhelm uninstall ({took:.1f} s): {result.stdout.strip()}\n  before: {before}\n  after:  {after}")
    assert set(before[0]) == {f"{ns}/web", f"{ns}/lb"} and all(EXPOSED <= set(m) for m in before[0].values())
    assert "status.loadBalancer" in before[0][f"{ns}/lb"]
    assert after == ({}, [other["name"]])
    assert node_edge.get(public)[0] == 404 and node_edge.get(lb_public)[0] == 404
    assert helm.run("status", "mysocketd", "-n", home_namespace, check=False).returncode != 0
    wait_for("the hook's Job deleted (hook-succeeded)",
             lambda: cp.kubectl("get", "jobs", "-n", home_namespace, "-o", "name").stdout.strip() == "", timeout=60)
    wait_for("the mysocketd pods gone", lambda: workloads.pods(cp, home_namespace,
                                                               "app.kubernetes.io/name=mysocketd") == [], timeout=90)
    delete_namespaces(cp, ns, home_namespace)


def test_a_namespace_scoped_release_with_credentials_in_values(node_cluster, node_edge, account, tmp_path):
    cp, edge = node_cluster.cp, workloads.EdgeAddress.of(node_edge, node_cluster.uplink)
    ops, watched, elsewhere = (dns_label(p) for p in ("ops", "watched", "elsewhere"))
    for ns in (ops, watched, elsewhere):
        cp.kubectl("create", "namespace", ns)
    cp.kubectl("label", "namespace", ops, "pod-security.kubernetes.io/enforce=restricted")
    helm = Helm(tmp_path / "helm", cp.kubeconfig)
    values = {"image": image_values(node_cluster.images.mysocketd),
              "edge": {"apiUrl": edge.api_url, "sshPort": edge.ssh_port,
                       "knownHosts": node_edge.known_hosts_line().replace(
                           f"[{node_edge.ssh_host}]", f"[{edge.ssh_host}]")},
              "credentials": {"email": account.email, "password": account.password,
                              "privateKey": account.private_key.read_text()},
              "clusterName": "node-b", "replicaCount": 1, "watchNamespace": watched,
              "protectedSecretNamespaces": [watched]}
    helm.run("install", "scoped", str(CHART), "-n", ops, "-f", str(helm.values_file(values)))
    workloads.rollout(cp, ops, "scoped-mysocketd", ROLLOUT)

    sa = f"--as=system:serviceaccount:{ops}:scoped-mysocketd"
    can = lambda *args: cp.kubectl("auth", "can-i", *args, sa, check=False).stdout.strip()   # noqa: E731
    assert can("list", "services", "-n", watched) == "yes"
    assert can("list", "services", "-n", elsewhere) == "no" and can("list", "services", "--all-namespaces") == "no"
    assert can("get", "secrets", "-n", watched) == "yes" and can("get", "secrets", "-n", elsewhere) == "no"
    assert can("get", "namespaces/kube-system") == "no"           # a cluster name of its own: nothing cluster-wide

    for ns in (watched, elsewhere):
        cp.kubectl("apply", "-f", "-", input=apps(ns, node_cluster.images.demo_app))
        workloads.rollout(cp, ns, "web", ROLLOUT)
    public = exposed_and_answering(node_edge, cp, watched)
    [socket] = account_sockets(node_edge, account)
    assert socket["name"] == f"mysocketd/node-b/{watched}/web"
    assert list(marks(cp)) == [f"{watched}/web"] and EXPOSED <= set(marks(cp)[f"{watched}/web"])   # only there
    logs = cp.kubectl("logs", "-n", ops, "deployment/scoped-mysocketd").stdout
    assert "from known_hosts" in logs                              # the pinned host key, not trust on first use

    helm.run("uninstall", "scoped", "-n", ops, "--timeout", "5m", timeout=360)
    assert marks(cp) == {} and account_sockets(node_edge, account) == []
    assert node_edge.get(public)[0] == 404
    delete_namespaces(cp, watched, elsewhere, ops)


def test_the_manifest_then_the_uninstall_job(node_cluster, node_edge, account, home_namespace, tmp_path):
    """The path without Helm: the Deployment deleted first, then yaml/uninstall/job.yaml, then the rest."""
    cp, edge = node_cluster.cp, workloads.EdgeAddress.of(node_edge, node_cluster.uplink)
    secret_from_files(cp, home_namespace, account, tmp_path)
    manifest = workloads.mysocketd_manifest(node_cluster.images.mysocketd, edge)
    cp.kubectl("apply", "-f", "-", input=manifest)
    workloads.rollout(cp, home_namespace, "mysocketd", ROLLOUT)
    ns = dns_label("manifest-apps")
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-f", "-", input=apps(ns, node_cluster.images.demo_app, lb=True))
    workloads.rollout(cp, ns, "web", ROLLOUT)
    public = exposed_and_answering(node_edge, cp, ns)
    exposed_and_answering(node_edge, cp, ns, "lb")
    other = foreign_socket(node_edge, account, f"mysocketd/another-cluster-{uuid.uuid4().hex[:4]}/{ns}/web")

    cp.kubectl("delete", "deployment", "mysocketd", "-n", home_namespace, "--timeout=90s", timeout=120)
    assert set(marks(cp)) == {f"{ns}/web", f"{ns}/lb"}            # nothing runs to release them now
    cp.kubectl("apply", "-f", "-", input=workloads.uninstall_job_manifest(node_cluster.images.mysocketd, edge))
    assert workloads.job_complete(cp, home_namespace, "mysocketd-uninstall"), \
        cp.kubectl("logs", "-n", home_namespace, "job/mysocketd-uninstall", check=False).stdout[-3000:]
    log = cp.kubectl("logs", "-n", home_namespace, "job/mysocketd-uninstall").stdout
    [done] = [json.loads(line) for line in log.splitlines() if '"uninstalled:' in line]
    print(f"\nuninstall job: {done['message']}")
    assert sorted(done["released"]) == [f"{ns}/lb", f"{ns}/web"] and len(done["deleted"]) == 2
    assert marks(cp) == {}
    assert [s["name"] for s in account_sockets(node_edge, account)] == [other["name"]]
    assert node_edge.get(public)[0] == 404

    job = workloads.uninstall_job_manifest(node_cluster.images.mysocketd, edge)
    cp.kubectl("delete", "--ignore-not-found", "--timeout=90s", "-f", "-", input=job + "---\n" + manifest,
               timeout=150)
    delete_namespaces(cp, ns)
