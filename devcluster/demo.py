"""`make demo`: the blog's demo -- apply, annotate, read the logs, curl the URL -- on a real node.

    python -m devcluster.demo          (inside a private network namespace; `make demo` does that)

Why it is shaped this way:
- One code path for the user and for CI: `run(out)` does every step, prints
  the story to `out` and returns what a test checks (per-pod counts, the
  dnsname, the tables kubectl printed, the pods' exit codes); `main()` only
  adds logging and an exit code. tests/demo/ calls `run()` itself.
- Everything runs as on a cluster: a node (devcluster.nodecluster) runs the
  manifest's Deployment from the image built from the Dockerfile, under Pod
  Security `restricted`, with its ServiceAccount, the kubelet's probes, and
  the demo app's three pods behind kube-proxy. The manifest is applied as
  shipped but for the edits the README asks of a user, which the demo prints
  (devcluster.workloads). Credentials reach kubectl as files, never as argv.
- The edge listens on every address of the private namespace: the node's
  pods reach it over the node's uplink, curl on this side as <name>.edge.localhost.
- Every wait is bounded; any failure names its step, shows the tail of the
  logs that explain it, and the teardown always runs: mysocketd's Deployment
  is deleted first (its pods get SIGTERM and their exit codes are shown), then
  the edge and the cluster.
"""

import collections
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.testing import ssh_keygen

from . import workloads
from .netns import NotInPrivateNetns, assert_private_netns
from .nodecluster import NodeCluster
from .stack import wait_for

STEPS = 9
NAMESPACE, SERVICE = "demo-app", "demo-app"
REQUESTS = 60
WAIT_SECONDS = 120.0
DNSNAME = "mysocket.io/dnsname"
MYSOCKETD_PODS = "app.kubernetes.io/name=mysocketd"
SVC_COLUMNS = ("NAME:.metadata.name,TYPE:.spec.type,CLUSTER-IP:.spec.clusterIP,PORT:.spec.ports[0].port,"
               r"PUBLIC-NAME:.metadata.annotations.mysocket\.io/dnsname")
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class DemoFailed(RuntimeError):
    """A step failed; the message names it (details were already printed)."""


class Demo:
    """The nine steps and the teardown; one instance per run."""

    def __init__(self, out, workdir):
        self.out = out
        self.workdir = Path(workdir)
        self.cluster = self.edge = None
        self.account_dir = self.workdir / "account"
        self.pool = ""                  # the global demo puts each cluster's Service in one pool
        self.result = {"workdir": str(self.workdir)}

    @property
    def cp(self):
        return self.cluster.cp

    # -- output --------------------------------------------------------------

    def say(self, text=""):
        print(text, file=self.out, flush=True)

    def show(self, text, indent="    "):
        for line in text.rstrip("\n").splitlines():
            self.say(indent + line)

    def kubectl(self, *args, **kwargs):
        """kubectl as admin; its output is shown indented, like a terminal would."""
        result = self.cp.kubectl(*args, **kwargs)
        self.show(result.stdout)
        return result

    # -- the steps -------------------------------------------------------------

    def start_components(self):
        self.cluster = NodeCluster(workdir=self.workdir / "cluster")
        self.cluster.start()
        t = self.cluster.timeline
        self.say(f"    kube-apiserver {self.cp.server}, with kube-controller-manager and kube-scheduler "
                 f"({t['control_plane']:.1f}s)")
        self.say(f"    node {self.cluster.node_name}: containerd, images imported ({t['images']:.1f}s), "
                 f"kubelet, kube-proxy; Ready at {t['node_ready']:.1f}s")
        self.say("    $ kubectl get nodes -o wide")
        self.kubectl("get", "nodes", "-o", "wide")
        # This private namespace only: lo here, the uplink for pods (workloads.edge_for_pods).
        self.edge = workloads.edge_for_pods(self.workdir / "edge", self.cluster.uplink)
        self.edge.start()
        self.pod_edge = workloads.EdgeAddress.of(self.edge, self.cluster.uplink)
        self.say(f"    edge: API {self.pod_edge.api_url}  SSH {self.cluster.uplink}:{self.edge.ssh_port}  "
                 f"HTTP *:{self.edge.http_port}")

    def register_account(self):
        account = self.account_dir
        account.mkdir(mode=0o700)
        public_key = ssh_keygen(account / "id_ed25519")
        email, password = "demo@example.com", secrets.token_urlsafe(18)
        for name, value in (("email", email), ("password", password)):
            (account / name).write_text(value)
            os.chmod(account / name, 0o600)
        user = self.edge.register(email, password, public_key, name="Demo")
        self.say(f"    {email} (user_name {user['user_name']}); fresh key pair {account / 'id_ed25519'}")

    def create_secret(self):
        self.say("    $ kubectl create namespace mysocket")
        self.kubectl("create", "namespace", "mysocket")
        self.say("    $ kubectl label namespace mysocket pod-security.kubernetes.io/enforce=restricted")
        self.kubectl("label", "namespace", "mysocket", "pod-security.kubernetes.io/enforce=restricted")
        a = self.account_dir
        from_files = [f"--from-file=email={a / 'email'}", f"--from-file=password={a / 'password'}",
                      f"--from-file=privatekey={a / 'id_ed25519'}"]
        self.say("    $ kubectl create secret generic mysocketd -n mysocket \\")
        self.say("        " + " \\\n        ".join(from_files))
        self.kubectl("create", "secret", "generic", "mysocketd", "-n", "mysocket", *from_files)

    def apply_manifest(self):
        edits = workloads.Edits()
        manifest = workloads.mysocketd_manifest(self.cluster.images.mysocketd, self.pod_edge, edits)
        self.say("    $ kubectl apply -f yaml/mysocketd.yaml    # as shipped, but:")
        for line in edits.lines:
            self.say(f"    #   {line}")
        self.kubectl("apply", "-f", "-", input=manifest)
        self.say("    $ kubectl rollout status -n mysocket deployment/mysocketd")
        self.show(workloads.rollout(self.cp, "mysocket", "mysocketd", WAIT_SECONDS))
        self.say("    $ kubectl get pods -n mysocket -o wide")
        self.kubectl("get", "pods", "-n", "mysocket", "-o", "wide")

    def apply_demo_app(self):
        edits = workloads.Edits()
        manifest = workloads.demo_app_manifest(self.cluster.images.demo_app, edits, pool=self.pool)
        self.say("    $ kubectl apply -f yaml/demo-deploy.yaml -f yaml/demo-service.yaml    # but:")
        for line in edits.lines:
            self.say(f"    #   {line}")
        self.kubectl("apply", "-f", "-", input=manifest)
        self.say(f"    $ kubectl rollout status -n {NAMESPACE} deployment/{SERVICE}")
        self.show(workloads.rollout(self.cp, NAMESPACE, SERVICE, WAIT_SECONDS))

    def show_all(self):
        self.say(f"    $ kubectl get all -n {NAMESPACE}")
        self.result["all_table"] = self.kubectl("get", "all", "-n", NAMESPACE).stdout
        pods = workloads.pods(self.cp, NAMESPACE, f"app={SERVICE}")
        self.result["pods"] = sorted(p["metadata"]["name"] for p in pods)
        self.result["pod_phases"] = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}

    def wait_exposed(self):
        def dnsname():
            svc = json.loads(self.cp.kubectl("get", "service", SERVICE, "-n", NAMESPACE, "-o", "json").stdout)
            return (svc["metadata"].get("annotations") or {}).get(DNSNAME)

        name = wait_for(f"the {DNSNAME} annotation", dnsname, timeout=WAIT_SECONDS, interval=0.2)
        self.say(f"    {DNSNAME}: {name}")
        url = f"http://{name}:{self.edge.http_port}/"
        wait_for(f"{url} to answer", lambda: self.edge.get(name)[0] == 200, timeout=WAIT_SECONDS, interval=0.2)
        self.say(f"    {url} answers")
        self.result.update(dnsname=name, url=url)
        # A Ready pod gets traffic once the EndpointSlice, then kube-proxy's rules, have it:
        # a second or two after the rollout. Wait for each pod's first answer before the table.
        seen, tries = set(), []
        wait_for(f"all {len(self.result['pods'])} pods to answer", lambda: tries.append(1) or seen.add(
            self.edge.get(name)[1].strip().removeprefix("Server: ")) or seen >= set(self.result["pods"]),
            timeout=WAIT_SECONDS, interval=0.05)
        self.say(f"    all {len(seen)} pods have answered through it ({len(tries)} requests): "
                 "kube-proxy has their endpoints")
        self.say(f"    $ kubectl logs -n mysocket -l {MYSOCKETD_PODS} --prefix | grep {SERVICE}")
        logs = self.cp.kubectl("logs", "-n", "mysocket", "-l", MYSOCKETD_PODS, "--prefix", "--tail=-1").stdout
        self.show("\n".join([line for line in logs.splitlines() if SERVICE in line][-6:]), indent="      ")

    def curl_table(self):
        url = self.result["url"]
        curl = shutil.which("curl")
        self.say(f"    $ for i in $(seq {REQUESTS}); do curl -s {url}; done | sort | uniq -c")
        if curl is None:
            self.say("    (no curl binary here -- apt-get install curl; using Python's http.client instead)")
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
        bodies = []
        for _ in range(REQUESTS):
            if curl:
                r = subprocess.run([curl, "-s", url], capture_output=True, text=True, timeout=20, env=env)
                bodies.append(r.stdout if r.returncode == 0 else f"(curl exit {r.returncode})\n")
            else:
                bodies.append(self.edge.get(self.result["dnsname"])[1])
        lines = [line for body in bodies for line in body.splitlines()]
        counts = collections.Counter(lines)
        self.show("\n".join(f"{n:7d} {line}" for line, n in sorted(counts.items())))
        self.result["counts"] = {line.removeprefix("Server: "): n for line, n in counts.items()}
        answered = sum(n for pod, n in self.result["counts"].items() if pod in self.result["pods"])
        if answered != REQUESTS:
            strays = sorted(set(self.result["counts"]) - set(self.result["pods"]))
            raise DemoFailed(f"only {answered} of {REQUESTS} requests were answered by a pod; other answers: {strays}")

    def show_service(self):
        self.say(f"    $ kubectl get svc -n {NAMESPACE} -o custom-columns='{SVC_COLUMNS}'")
        self.result["svc_table"] = self.kubectl("get", "svc", "-n", NAMESPACE, "-o",
                                                f"custom-columns={SVC_COLUMNS}").stdout

    STEP_LIST = (
        ("starting a control plane and a node (containerd, kubelet, kube-proxy), and the edge",
         start_components, ("cluster", "edge")),
        ("registering a demo account on the edge", register_account, ("edge",)),
        ("creating the namespace (Pod Security: restricted) and the Secret from files", create_secret, ("cluster",)),
        ("applying yaml/mysocketd.yaml: the Deployment runs on the node", apply_manifest, ("cluster", "mysocketd")),
        ("applying yaml/demo-deploy.yaml and yaml/demo-service.yaml (annotated mysocket.io/enabled)",
         apply_demo_app, ("cluster",)),
        (f"kubectl get all -n {NAMESPACE}: three pods running", show_all, ("cluster",)),
        ("waiting for the public name and the URL to answer", wait_exposed, ("mysocketd", "edge")),
        (f"curling the public URL {REQUESTS} times through the edge", curl_table, ("edge", "mysocketd")),
        ("kubectl get svc: the public name on the Service", show_service, ("cluster",)),
    )

    # -- failure and teardown ----------------------------------------------------

    def log_tails(self, which):
        tails = []
        if "cluster" in which and self.cluster is not None and self.cluster.workdir is not None:
            tails.append(("control plane and node", self.cluster.log_tails(15)))
        if "edge" in which and self.edge is not None:
            tails.append((f"edge ({self.edge.log_path})", self.edge.log_tail(20)))
        if "mysocketd" in which and self.cluster is not None and self.cluster.cp is not None:
            result = self.cp.kubectl("logs", "-n", "mysocket", "-l", MYSOCKETD_PODS, "--prefix", "--tail=25",
                                     check=False)
            events = self.cp.kubectl("get", "events", "-n", "mysocket", check=False)
            tails.append(("mysocketd pods (kubectl logs)", result.stdout + result.stderr))
            tails.append(("events in mysocket", events.stdout))
        return tails

    def teardown(self):
        """Stop everything in a fixed order; return mysocketd's pods' exit codes ({} if none ran)."""
        self.say("==> tearing down: mysocketd (kubectl delete: SIGTERM to its pods), edge, cluster")
        codes = self._stopping("mysocketd", self._delete_mysocketd) or {}
        for what, part in (("edge", self.edge), ("cluster", self.cluster)):
            if part is not None:
                self._stopping(what, part.stop)
        for pod, code in sorted(codes.items()):
            self.say(f"    mysocketd pod {pod} exited with code {code} after SIGTERM")
        self.result["exit_codes"] = codes
        return codes

    def _stopping(self, what, stop):
        try:
            return stop()
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            self.say(f"    could not stop {what}: {e}")
            return None

    def _delete_mysocketd(self):
        if self.cluster is None or self.cluster.node is None:
            return {}
        pods = [p["metadata"]["name"] for p in workloads.pods(self.cp, "mysocket", MYSOCKETD_PODS)]
        if not pods:
            return {}
        with workloads.PodExits(self.cp, "mysocket", MYSOCKETD_PODS) as exits:
            self.cp.kubectl("delete", "deployment", "mysocketd", "-n", "mysocket", "--wait=true", timeout=90)
            wait_for("the mysocketd pods to be gone", lambda: all(exits.deleted(p) for p in pods), timeout=60)
            return {p: exits.terminated(p).get("mysocketd", {}).get("exitCode") for p in pods}


def run(out=sys.stdout, workdir=None):
    """Run the demo; print the story to `out`; return a dict with at least dnsname, url, pods,
    counts (pod name -> answers), all_table, svc_table and exit_codes (pod -> code).
    Raises DemoFailed (after printing why and tearing down) on any failure."""
    assert_private_netns()
    demo = Demo(out, workdir or tempfile.mkdtemp(prefix="mysocketd-demo-"))
    return conduct(demo, own_dir=workdir is None,
                   summary=lambda r: f"{r['dnsname']} served by {len(r['counts'])} pods")


def conduct(demo, own_dir, summary):
    """Run `demo`'s STEP_LIST in order, tear down whatever happened, and check mysocketd's exit codes;
    return demo.result, or raise DemoFailed. `summary(result)` ends the closing line. (The global
    demo's run too: devcluster.demo_global.)"""
    demo.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        failure = _run_steps(demo)
    finally:
        codes = demo.teardown()
    if failure is None and (not codes or any(code != 0 for code in codes.values())):
        failure = f"mysocketd's pods did not all exit with code 0 on SIGTERM: {codes}"
        demo.say(f"==> FAILED: {failure}")
    if failure is not None:
        demo.say(f"    files and logs kept in {demo.workdir}")
        raise DemoFailed(failure)
    if own_dir:
        shutil.rmtree(demo.workdir, ignore_errors=True)
    demo.result["seconds"] = time.monotonic() - started
    demo.say(f"==> done in {demo.result['seconds']:.0f}s: {summary(demo.result)}")
    return demo.result


def _run_steps(demo):
    """Run the steps in order; on the first failure print why and return the message."""
    steps = type(demo).STEP_LIST
    for number, (title, step, logs) in enumerate(steps, 1):
        demo.say(f"==> [{number}/{len(steps)}] {title}")
        try:
            step(demo)
        except Exception as e:  # noqa: BLE001 - any failure ends the demo the same way
            failure = f"step [{number}/{len(steps)}] ({title}) failed: {_first_lines(e)}"
            demo.say(f"==> FAILED: {failure}")
            for name, tail in demo.log_tails(logs):
                demo.say(f"--- last lines of the {name} log ---")
                demo.show(tail or "(empty)", indent="  ")
            return failure
    return None


def _first_lines(error, lines=6):
    text = str(error) or type(error).__name__
    head = text.strip().splitlines()
    return "\n".join(head[:lines]) + (" ..." if len(head) > lines else "")


def main(run=run, target="demo"):
    """`python -m devcluster.demo` (and, with its own run, devcluster.demo_global): an exit code."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    try:
        run()
    except NotInPrivateNetns as e:
        print(f"{e} -- or use `make {target}`", file=sys.stderr)
        return 2
    except DemoFailed as e:
        print(f"make {target} failed: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
