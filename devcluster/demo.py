"""`make demo`: the blog's demo -- apply, annotate, read the logs, curl the URL -- on one machine.

    python -m devcluster.demo          (inside a private network namespace; `make demo` does that)

Why it is shaped this way:
- One code path for the user and for CI: `run(out)` does every step, prints
  the story to `out` and returns what a test checks (per-pod counts, the
  dnsname, the `kubectl get svc` table); `main()` only adds logging and an
  exit code. tests/demo/ calls `run()` itself.
- The controller runs "as the Deployment would": with a TokenRequest
  kubeconfig of the manifest's ServiceAccount (so the manifest's RBAC is what
  the demo proves), its secret dir filled from the Secret read back from the
  cluster (the demo plays kubelet: it reads the Deployment's secret volume and
  writes the Secret's keys as files) and the cluster name from the
  Deployment's env. Credentials reach kubectl as files, never as argv.
- There is no kubelet, so the demo Deployment's pods are stand-in processes
  bound to the Service's ClusterIP (devcluster.standin); the output says so.
- Every wait is bounded; any failure names its step, shows the tail of the
  log that explains it, and everything started is torn down in a fixed order
  (controller SIGTERM, stand-ins, edge, control plane) whatever happened.
"""

import base64
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

from edge.testing import EdgeProcess, ssh_keygen

from .binaries import REPO_ROOT
from .controller import ControllerProcess
from .controlplane import ControlPlane
from .names import random_suffix
from .netns import NotInPrivateNetns, add_cluster_ip, assert_private_netns
from .stack import wait_for
from .standin import StandIns

STEPS = 9
NAMESPACE, SERVICE = "demo-app", "demo-app"
REQUESTS = 60
WAIT_SECONDS = 60.0
DNSNAME = "mysocket.io/dnsname"
SVC_COLUMNS = ("NAME:.metadata.name,TYPE:.spec.type,CLUSTER-IP:.spec.clusterIP,PORT:.spec.ports[0].port,"
               r"PUBLIC-NAME:.metadata.annotations.mysocket\.io/dnsname")
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class DemoFailed(RuntimeError):
    """A step failed; the message names it (details were already printed)."""


class MountedSecret:
    """A Secret's data as kubelet would mount it: one file per key.

    ControllerProcess calls write_secret_dir() on its `account`, so this
    stands where an Account would, without the demo knowing the values.
    """

    def __init__(self, secret, mode=0o440):
        self.files = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        self.mode = mode

    def write_secret_dir(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for key, value in self.files.items():
            target = path / key
            target.write_bytes(value)
            os.chmod(target, self.mode)
        return path


class Demo:
    """The nine steps and the teardown; one instance per run."""

    def __init__(self, out, workdir):
        self.out = out
        self.workdir = Path(workdir)
        self.cp = self.edge = self.controller = self.standins = None
        self.account_dir = self.workdir / "account"
        self.result = {"workdir": str(self.workdir)}

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
        self.cp = ControlPlane(workdir=self.workdir / "controlplane")
        self.cp.start()
        self.say(f"    kube-apiserver {self.cp.server} (etcd + apiserver, RBAC on; no kubelet, no scheduler)")
        self.edge = EdgeProcess(self.workdir / "edge", admin=False)
        self.edge.start()
        self.say(f"    edge: API {self.edge.api_url}  SSH {self.edge.ssh_host}:{self.edge.ssh_port}  "
                 f"HTTP 127.0.0.1:{self.edge.http_port}")
        self.standins = StandIns(self.cp, log_dir=self.workdir / "pods")

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

    def apply_manifest(self):
        self.say("    $ kubectl apply -f yaml/mysocketd.yaml")
        self.kubectl("apply", "-f", str(REPO_ROOT / "yaml" / "mysocketd.yaml"))
        a = self.account_dir
        from_files = [f"--from-file=email={a / 'email'}", f"--from-file=password={a / 'password'}",
                      f"--from-file=privatekey={a / 'id_ed25519'}"]
        self.say("    $ kubectl create secret generic mysocketd -n mysocket \\")
        for flag in from_files:
            self.say(f"        {flag} \\")
        self.say("        --dry-run=client -o yaml | kubectl apply -f -")
        manifest = self.cp.kubectl("create", "secret", "generic", "mysocketd", "-n", "mysocket", *from_files,
                                   "--dry-run=client", "-o", "yaml").stdout
        self.kubectl("apply", "-f", "-", input=manifest)

    def start_controller(self):
        deployment = json.loads(self.cp.kubectl("get", "deployment", "mysocketd", "-n", "mysocket",
                                                "-o", "json").stdout)
        pod = deployment["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v.get("secret"))
        container = pod["containers"][0]
        mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume["name"])
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        secret_name = volume["secret"]["secretName"]
        secret = json.loads(self.cp.kubectl("get", "secret", secret_name, "-n", "mysocket",
                                            "-o", "json").stdout)
        mounted = MountedSecret(secret, volume["secret"].get("defaultMode", 0o644))
        kubeconfig = self.cp.service_account_kubeconfig("mysocket", pod["serviceAccountName"])
        self.controller = ControllerProcess(
            self.workdir / "mysocketd", kubeconfig=kubeconfig, edge=self.edge, account=mounted,
            namespace="", cluster_name=env.get("MYSOCKETD_CLUSTER_NAME", "default"),
            extra_args=["--log-format", "text"], log_level="INFO")
        self.say(f"    identity: ServiceAccount mysocket/{pod['serviceAccountName']} (TokenRequest kubeconfig)")
        self.say(f"    the demo plays kubelet: Secret mysocket/{secret_name} (keys {', '.join(sorted(mounted.files))})"
                 f" written to {self.controller.secret_dir} (in the pod: {mount})")
        self.say(f"    $ {' '.join(_shown_argv(self.controller.argv()))}")
        self.controller.start(timeout=WAIT_SECONDS)
        self.say(f"    mysocketd is ready (pid {self.controller.proc.pid}); log {self.controller.log_path}")

    def apply_demo_app(self):
        self.say("    $ kubectl apply -f yaml/demo-deploy.yaml -f yaml/demo-service.yaml")
        self.kubectl("apply", "-f", str(REPO_ROOT / "yaml" / "demo-deploy.yaml"),
                     "-f", str(REPO_ROOT / "yaml" / "demo-service.yaml"))

    def start_pods(self):
        deployment = json.loads(self.cp.kubectl("get", "deployment", SERVICE, "-n", NAMESPACE,
                                                "-o", "json").stdout)
        replicas = deployment["spec"].get("replicas", 1)
        spec = json.loads(self.cp.kubectl("get", "service", SERVICE, "-n", NAMESPACE, "-o", "json").stdout)["spec"]
        ip, port = spec["clusterIP"], spec["ports"][0]["port"]
        self.say(f"    the local control plane has no kubelet, so {replicas} stand-in processes play the "
                 f"Deployment's {replicas} pods,")
        self.say(f"    each bound to the Service's ClusterIP {ip}:{port} (on lo of this private network namespace)")
        add_cluster_ip(ip)
        template_hash = random_suffix(10)
        for _ in range(replicas):
            pod = self.standins.start(f"{SERVICE}-{template_hash}-{random_suffix()}", ip, port)
            self.say(f"    stand-in pod {pod.name} (pid {pod.child.pid})")
        self.result["pods"] = [p.name for p in self.standins.pods]

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
        # The "tunnel up" line comes once the ssh child has stayed up a moment; show it if it comes soon.
        try:
            wait_for("the tunnel up line", lambda: any("tunnel up" in line for line in self.service_log_lines()),
                     timeout=15, interval=0.2)
        except AssertionError:
            pass
        self.say("    mysocketd's log about this Service:")
        self.show("\n".join(self.service_log_lines()[-6:]), indent="      ")

    def service_log_lines(self):
        return [line for line in self.controller.log_text().splitlines()
                if f"namespace={NAMESPACE}" in line and f"service={SERVICE}" in line]

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
        ("starting the control plane (etcd + kube-apiserver) and the edge", start_components, ("cp", "edge")),
        ("registering a demo account on the edge", register_account, ("edge",)),
        ("applying yaml/mysocketd.yaml as admin and putting the account into Secret mysocket/mysocketd",
         apply_manifest, ("cp",)),
        ("running mysocketd as the Deployment would", start_controller, ("controller", "cp")),
        ("applying yaml/demo-deploy.yaml and yaml/demo-service.yaml (annotated mysocket.io/enabled)",
         apply_demo_app, ("cp",)),
        ("starting stand-in pods for the demo Deployment", start_pods, ("pods",)),
        ("waiting for the public name and the URL to answer", wait_exposed, ("controller", "edge")),
        (f"curling the public URL {REQUESTS} times through the edge", curl_table, ("edge", "controller")),
        ("kubectl get svc: the public name on the Service", show_service, ("cp",)),
    )

    # -- failure and teardown ----------------------------------------------------

    def log_tails(self, which):
        tails = []
        if "cp" in which and self.cp is not None and self.cp.workdir is not None:
            tails.append(("control plane", self.cp.log_tails(15)))
        if "edge" in which and self.edge is not None:
            tails.append((f"edge ({self.edge.log_path})", self.edge.log_tail(20)))
        if "controller" in which and self.controller is not None:
            tails.append((f"mysocketd ({self.controller.log_path})", self.controller.log_tail(25)))
        if "pods" in which and self.standins is not None:
            tails += [(f"stand-in {p.name}", p.child.log_tail(10)) for p in self.standins.pods]
        return tails

    def teardown(self):
        """Stop everything in a fixed order; return mysocketd's exit code (None if it never ran)."""
        self.say("==> tearing down: mysocketd (SIGTERM), stand-in pods, edge, control plane")
        code = self._stopping("mysocketd", self._stop_controller)
        for what, part in (("stand-ins", self.standins), ("edge", self.edge), ("control plane", self.cp)):
            if part is not None:
                self._stopping(what, part.stop)
        if code is not None:
            self.say(f"    mysocketd exited with code {code} after SIGTERM")
        return code

    def _stopping(self, what, stop):
        try:
            return stop()
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            self.say(f"    could not stop {what}: {e}")
            return None

    def _stop_controller(self):
        if self.controller is None or self.controller.proc is None:
            return None
        code = self.controller.stop()
        self.controller.reap_orphans()
        return code


def run(out=sys.stdout, workdir=None):
    """Run the demo; print the story to `out`; return a dict with at least
    dnsname, url, pods, counts (pod name -> answers) and svc_table.
    Raises DemoFailed (after printing why and tearing down) on any failure."""
    assert_private_netns()
    own_dir = workdir is None
    demo = Demo(out, workdir or tempfile.mkdtemp(prefix="mysocketd-demo-"))
    demo.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        failure = _run_steps(demo)
    finally:
        code = demo.teardown()
    if failure is None and code != 0:
        failure = f"mysocketd exited with code {code} on SIGTERM (expected 0)"
        demo.say(f"==> FAILED: {failure}")
        for name, tail in demo.log_tails(("controller",)):
            demo.show(tail, indent="  ")
    if failure is not None:
        demo.say(f"    files and logs kept in {demo.workdir}")
        raise DemoFailed(failure)
    if own_dir:
        shutil.rmtree(demo.workdir, ignore_errors=True)
    demo.say(f"==> done in {time.monotonic() - started:.0f}s: {demo.result['dnsname']} served by "
             f"{len(demo.result['counts'])} pods")
    return demo.result


def _run_steps(demo):
    """Run the steps in order; on the first failure print why and return the message."""
    for number, (title, step, logs) in enumerate(Demo.STEP_LIST, 1):
        demo.say(f"==> [{number}/{STEPS}] {title}")
        try:
            step(demo)
        except Exception as e:  # noqa: BLE001 - any failure ends the demo the same way
            failure = f"step [{number}/{STEPS}] ({title}) failed: {_first_lines(e)}"
            demo.say(f"==> FAILED: {failure}")
            for name, tail in demo.log_tails(logs):
                demo.say(f"--- last lines of the {name} log ---")
                demo.show(tail or "(empty)", indent="  ")
            return failure
    return None


def _shown_argv(argv):
    """The controller's argv as a user would type it (relative script, no interpreter path)."""
    return ["python", "mysocketd.py", *argv[2:]]


def _first_lines(error, lines=6):
    text = str(error) or type(error).__name__
    head = text.strip().splitlines()
    return "\n".join(head[:lines]) + (" ..." if len(head) > lines else "")


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    try:
        run()
    except NotInPrivateNetns as e:
        print(f"{e} -- or use `make demo`", file=sys.stderr)
        return 2
    except DemoFailed as e:
        print(f"make demo failed: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
