"""yaml/mysocketd.yaml on a real node: the path users take, from the image to the public name.

One node, edge and install for the module (conftest.py). Every assertion reads
what the kubelet, kube-proxy or the controllers did: pod conditions the
kubelet set from its own probes, its prober metrics through the apiserver's
node proxy, EndpointSlices written by the endpointslice controller, the exit
codes the kubelet recorded, and answers through the edge from the real pods.
"""

import json

import psutil
import pytest
import yaml
from node_stack import MYSOCKETD_PODS, ROLLOUT_TIMEOUT

from devcluster import workloads
from devcluster.stack import account_sockets, wait_for

pytestmark = pytest.mark.timeout(300)

# Imports what mysocketd imports (not main), then checks that every module came with a .pyc
# that is valid for its source: with a read-only root, anything else is compiled at every start.
BYTECODE_CHECK = r"""
import importlib.util, json, os, sys
sys.path.insert(0, "/app")
import mysocketd
checked, stale = 0, []
for module in list(sys.modules.values()):
    spec = getattr(module, "__spec__", None)
    if not spec or not spec.cached or not (spec.origin or "").endswith(".py"):
        continue
    checked += 1
    try:
        with open(spec.cached, "rb") as f:
            head = f.read(16)
    except OSError:
        stale.append(spec.origin)
        continue
    st = os.stat(spec.origin)
    flags = int.from_bytes(head[4:8], "little")
    fresh = head[:4] == importlib.util.MAGIC_NUMBER and (flags != 0 or (
        int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF))
    if not fresh:
        stale.append(spec.origin)
print(json.dumps({"checked": checked, "stale": stale, "dont_write_bytecode": sys.flags.dont_write_bytecode}))
"""


def pod_names(pods):
    return sorted(p["metadata"]["name"] for p in pods)


def leader_pod(installed):
    """The pod whose replica holds the Lease (its identity is the pod's hostname plus a suffix)."""
    lease = json.loads(installed.cp.kubectl("get", "lease", "mysocketd", "-n", "mysocket", "-o", "json").stdout)
    holder = lease["spec"].get("holderIdentity") or ""
    return next((name for name in pod_names(installed.mysocketd_pods())
                 if holder == name or holder.startswith(name + "-")), None)


def processes_of_pod(uid):
    """Live processes in the pod's cgroup (the kubelet names it pod<uid>)."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            with open(f"/proc/{proc.pid}/cgroup") as f:
                if f"pod{uid}" in f.read():
                    found.append((proc.pid, proc.info["name"]))
        except OSError:
            pass
    return found


def prober_counts(cp, node, pod):
    """{(probe type, result): count} from the kubelet's prober metrics for `pod`."""
    text = cp.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics/probes").stdout
    counts = {}
    for line in text.splitlines():
        if line.startswith("prober_probe_total{") and f'pod="{pod}"' in line:
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            key = (labels["probe_type"].strip('"'), labels["result"].strip('"'))
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def web_manifest(namespace, image, name="web"):
    """The demo app's Deployment (one replica) and annotated Service, in `namespace`."""
    docs = [d for d in yaml.safe_load_all(workloads.demo_app_manifest(image)) if d["kind"] != "Namespace"]
    for doc in docs:
        doc["metadata"].update(namespace=namespace, name=name)
        if doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = 1
    return yaml.safe_dump_all(docs)


def test_the_deployment_runs_under_restricted_pod_security(installed):
    cp = installed.cp
    pods = installed.mysocketd_pods()
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Running" and workloads.ready(p) for p in pods)
    labels = json.loads(cp.kubectl("get", "namespace", "mysocket", "-o", "json").stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # ... and the label is enforced here: a privileged pod is refused by the same admission.
    refused = cp.kubectl("run", "privileged", "-n", "mysocket", f"--image={installed.cluster.images.pause}",
                         "--privileged", "--dry-run=server", check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr


def unhealthy(cp, pod, probe):
    """The kubelet's messages for failed `probe` probes of `pod` (its Unhealthy events)."""
    events = json.loads(cp.kubectl("get", "events", "-n", "mysocket", "--field-selector",
                                   f"involvedObject.name={pod},reason=Unhealthy", "-o", "json").stdout)["items"]
    return [e["message"] for e in events if e["message"].startswith(f"{probe} probe failed")]


def test_the_kubelets_probes_pass(installed):
    """Ready comes from the kubelet's readiness probe; its prober metrics show liveness too.

    Readiness fails until the first login and list are done. The manifest has no startup
    probe, so a liveness probe that comes before the server listens (the kubelet's first probe
    is at a random moment of its first period) is refused; any other liveness failure -- a 500
    from a stuck loop, a timeout -- fails this test, and so would a restart."""
    cp, node = installed.cp, installed.cluster.node_name
    pods = installed.mysocketd_pods()
    threshold = pods[0]["spec"]["containers"][0]["livenessProbe"].get("failureThreshold", 3)
    for pod in pod_names(pods):
        counts = wait_for(f"a successful liveness probe of {pod}",
                          lambda pod=pod: (c := prober_counts(cp, node, pod)).get(("Liveness", "successful"))
                          and c, timeout=90, interval=1)
        assert counts.get(("Readiness", "successful"), 0) >= 1, counts
        assert counts.get(("Liveness", "failed"), 0) < threshold, counts
        assert all("connection refused" in message for message in unhealthy(cp, pod, "Liveness")), \
            unhealthy(cp, pod, "Liveness")
    assert all(s["restartCount"] == 0 for p in installed.mysocketd_pods() for s in p["status"]["containerStatuses"])


def test_the_image_ships_bytecode_for_everything_it_imports(installed):
    pod = pod_names(installed.mysocketd_pods())[0]
    out = installed.cp.kubectl("exec", "-n", "mysocket", pod, "-c", "mysocketd", "--",
                               "python", "-c", BYTECODE_CHECK).stdout
    report = json.loads(out)
    assert report["checked"] > 300, report          # 520 today: the kubernetes client is most of them
    assert report["stale"] == [] and report["dont_write_bytecode"] == 1, report


def test_the_public_name_serves_the_real_pods(installed, demo_app):
    pods = pod_names(workloads.pods(installed.cp, "demo-app", "app=demo-app"))
    assert len(pods) == 3
    # A Ready pod gets traffic once the EndpointSlice and then kube-proxy's rules have it (a
    # second or two after the rollout): until then, wait for each pod's first answer.
    seen = set()
    wait_for("every pod to answer through the public name",
             lambda: seen.add(installed.edge.get(demo_app)[1].strip().removeprefix("Server: ")) or seen >= set(pods),
             timeout=60, interval=0.05)
    assert seen == set(pods)
    answers = [installed.edge.get(demo_app) for _ in range(60)]
    assert {status for status, _ in answers} == {200}
    # kube-proxy picks a pod at random per connection: all three answer (one missing: p = 3e-11).
    assert {body.strip().removeprefix("Server: ") for _, body in answers} == set(pods)


def test_endpointslices_follow_pod_readiness(node_cluster, node_namespace):
    cp, ns = node_cluster.cp, node_namespace
    gate = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gate", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "gate"}}, "template": {
                "metadata": {"labels": {"app": "gate"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "gate", "image": node_cluster.images.demo_app, "command": ["sleep", "infinity"],
                    "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]},
                                       "periodSeconds": 1, "failureThreshold": 1},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                    "volumes": [{"name": "tmp", "emptyDir": {}}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gate", "namespace": ns},
               "spec": {"selector": {"app": "gate"}, "ports": [{"port": 80}]}}
    cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [gate, service]}))

    def endpoints():
        slices = json.loads(cp.kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=gate",
                                       "-o", "json").stdout)["items"]
        return [(ep["targetRef"]["name"], ep["conditions"]["ready"]) for s in slices for ep in s.get("endpoints") or []]

    [(pod, ready)] = wait_for("an endpoint for the running, unready pod", endpoints, timeout=90)
    assert ready is False
    cp.kubectl("exec", "-n", ns, pod, "--", "touch", "/tmp/ready")
    wait_for("the endpoint to turn ready", lambda: endpoints() == [(pod, True)], timeout=30)
    cp.kubectl("exec", "-n", ns, pod, "--", "rm", "/tmp/ready")
    wait_for("the endpoint to turn unready again", lambda: endpoints() == [(pod, False)], timeout=30)


def test_deleting_a_namespace_with_an_exposed_service_completes(installed, node_namespace):
    cp, ns = installed.cp, node_namespace
    cp.kubectl("apply", "-f", "-", input=web_manifest(ns, installed.cluster.images.demo_app))
    name = installed.wait_dnsname(ns, "web", timeout=90)
    wait_for(f"{name} to answer", lambda: installed.edge.get(name)[0] == 200, timeout=60)
    svc = json.loads(cp.kubectl("get", "service", "web", "-n", ns, "-o", "json").stdout)
    assert "mysocket.io/cleanup" in svc["metadata"].get("finalizers", [])

    result = cp.kubectl("delete", "namespace", ns, "--timeout=90s", check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    gone = cp.kubectl("get", "namespace", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    sockets = account_sockets(installed.edge, installed.account)
    assert [s for s in sockets if s.get("dnsname") == name] == []


def readyz(installed, pod):
    """/readyz as seen from inside the pod, over IPv6 loopback (the server listens dual-stack)."""
    script = "import urllib.request; print(urllib.request.urlopen('http://[::1]:8080/readyz').read().decode())"
    return installed.cp.kubectl("exec", "-n", "mysocket", pod, "-c", "mysocketd", "--",
                                "python", "-c", script).stdout.strip()


def test_the_two_replicas_elect_one_leader(installed):
    leader = wait_for("a leader", lambda: leader_pod(installed), timeout=60)
    answers = {pod: readyz(installed, pod) for pod in pod_names(installed.mysocketd_pods())}
    assert sorted(answers.values()) == ["leader", "standby"], answers
    assert answers[leader] == "leader"


def test_deleting_the_leader_pod_replaces_it_and_it_exits_0_leaving_nothing(installed, demo_app):
    cp = installed.cp
    leader = wait_for("a leader", lambda: leader_pod(installed), timeout=60)
    [pod] = [p for p in installed.mysocketd_pods() if p["metadata"]["name"] == leader]
    uid, grace = pod["metadata"]["uid"], pod["spec"]["terminationGracePeriodSeconds"]
    inside = processes_of_pod(uid)
    assert any(name == "ssh" for _, name in inside), inside        # its tunnels run in the pod

    with workloads.PodExits(cp, "mysocket", MYSOCKETD_PODS) as exits:
        cp.kubectl("delete", "pod", leader, "-n", "mysocket", f"--timeout={grace + 30}s", timeout=grace + 60)
        wait_for(f"{leader} to be gone", lambda: exits.deleted(leader), timeout=grace + 30)
        terminated = exits.terminated(leader)["mysocketd"]
    # 0, not 137: it stopped by itself on SIGTERM, within the grace period (else the kubelet's SIGKILL).
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed", terminated
    assert processes_of_pod(uid) == []

    workloads.rollout(cp, "mysocket", "mysocketd", ROLLOUT_TIMEOUT)
    pods = pod_names(installed.mysocketd_pods())
    assert len(pods) == 2 and leader not in pods
    new_leader = wait_for("a new leader among the live pods", lambda: leader_pod(installed), timeout=60)
    assert new_leader in pods
    wait_for(f"{demo_app} to answer again", lambda: installed.edge.get(demo_app)[0] == 200, timeout=60)
    assert {installed.edge.get(demo_app)[0] for _ in range(20)} == {200}
