"""yaml/ as a user applies it to the local node, and the waits and watches that go with it.

Why it is shaped this way:
- The manifests are applied as shipped, with exactly the edits the README asks
  of a user and nothing else, each one named by manifest_edits() so that the
  demo can print them and a test can prove there are no others: the image set
  in the Deployment (ours is built locally, no registry is reachable), the
  edge it talks to in the Deployment's env, and the placeholder Secret left
  out because the real one was created from files first (README option b).
- Waits use what a user would: `kubectl rollout status`, `kubectl wait`.
- A pod's exit code outlives the pod only in the watch events that precede
  its deletion, so PodExits collects them from a watch started before the
  delete: the proof that SIGTERM ended the container with 0 within its grace
  period (past it, the kubelet's SIGKILL makes it 137).
"""

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .binaries import REPO_ROOT, binary

YAML_DIR = REPO_ROOT / "yaml"
MYSOCKETD = ("mysocket", "mysocketd")           # namespace, Deployment (and container, Secret)
POOL = "mysocket.io/pool"
PUBLIC_IMAGES = {"mysocketd": "ghcr.io/mysocketd/mysocketd", "demo_app": "python"}


def edge_for_pods(workdir, uplink: str, extra_args=()):
    """An edge (not started) that a NodeCluster's pods reach over its uplink: it listens on every address
    of this private namespace, opens registration and its plain-HTTP API there again (a non-loopback
    listener closes both, edge/README.md), and names the uplink as every tunnel's node (`tunnel_server`),
    where mysocketd connects. No --admin: it refuses a listener beyond loopback."""
    from edge.testing import EdgeProcess

    edge = EdgeProcess(workdir, extra_args=("--registration", "open", "--api-listen", "0.0.0.0",
                                            "--tunnel-server", uplink, *extra_args))
    edge.host = "0.0.0.0"
    return edge


def install_manifest(cluster, edge, workdir: Path):
    """mysocketd as the README installs it on `cluster` (a NodeCluster): an account on `edge`, the
    `mysocket` namespace under Pod Security `restricted`, the Secret from files, and `yaml/mysocketd.yaml`
    pointed at the edge as pods reach it. Returns the account; the caller waits for the rollout."""
    from .controller import Account

    cp = cluster.cp
    account = Account.register(edge, Path(workdir) / "account")
    secret_dir = account.write_secret_dir(Path(workdir) / "secret")
    cp.kubectl("create", "namespace", "mysocket")
    cp.kubectl("label", "namespace", "mysocket", "pod-security.kubernetes.io/enforce=restricted")
    cp.kubectl("create", "secret", "generic", "mysocketd", "-n", "mysocket",
               *[f"--from-file={key}={secret_dir / key}" for key in ("email", "password", "privatekey")])
    cp.kubectl("apply", "-f", "-", input=mysocketd_manifest(cluster.images.mysocketd,
                                                             EdgeAddress.of(edge, cluster.uplink)))
    return account


@dataclass(frozen=True)
class EdgeAddress:
    """Where pods reach the edge (its listen address is the node's uplink)."""

    api_url: str
    ssh_host: str
    ssh_port: int

    @classmethod
    def of(cls, edge, host: str) -> "EdgeAddress":
        """The edge (an EdgeProcess) as pods see it at `host`, the node's uplink."""
        return cls(f"http://{host}:{edge.api_port}/", host, edge.ssh_port)

    def env(self) -> dict:
        return {"MYSOCKETD_API_URL": self.api_url, "MYSOCKETD_SSH_HOST": self.ssh_host,
                "MYSOCKETD_SSH_PORT": str(self.ssh_port)}


@dataclass
class Edits:
    """What was changed from the shipped manifest, in words a user follows."""

    lines: list = field(default_factory=list)


def documents(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def mysocketd_manifest(image: str, edge: EdgeAddress, edits: Edits = None) -> str:
    """yaml/mysocketd.yaml with the image and the edge set, and without its placeholder Secret."""
    edits = edits if edits is not None else Edits()
    out = []
    namespace, name = MYSOCKETD
    for doc in documents(YAML_DIR / "mysocketd.yaml"):
        meta = doc.get("metadata", {})
        if doc["kind"] == "Secret" and (meta.get("namespace"), meta.get("name")) == MYSOCKETD:
            edits.lines.append(f"left out the placeholder Secret {namespace}/{name} (created from files above)")
            continue
        if doc["kind"] == "Deployment" and meta.get("name") == name:
            container = _container(doc, name)
            container["image"] = image
            env = container.setdefault("env", [])
            for key, value in edge.env().items():
                env[:] = [e for e in env if e["name"] != key] + [{"name": key, "value": value}]
            edits.lines.append(f"Deployment {namespace}/{name}: image {image}")
            edits.lines.append(f"Deployment {namespace}/{name}: env " +
                               " ".join(f"{k}={v}" for k, v in edge.env().items()))
        out.append(doc)
    return yaml.safe_dump_all(out, sort_keys=False)


def uninstall_job_manifest(image: str, edge: EdgeAddress) -> str:
    """yaml/uninstall/job.yaml with the image and the edge set as in the Deployment (its own words say so)."""
    out = []
    for doc in documents(YAML_DIR / "uninstall" / "job.yaml"):
        if doc["kind"] == "Job":
            container = _container(doc, MYSOCKETD[1])
            container["image"] = image
            env = container.setdefault("env", [])
            for key, value in edge.env().items():
                env[:] = [e for e in env if e["name"] != key] + [{"name": key, "value": value}]
        out.append(doc)
    return yaml.safe_dump_all(out, sort_keys=False)


def job_complete(cp, namespace: str, job: str, timeout: float = 180.0) -> bool:
    """`kubectl wait --for=condition=complete`; False (not an exception) when it failed or timed out."""
    result = cp.kubectl("wait", "-n", namespace, "--for=condition=complete", f"job/{job}",
                        f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
    return result.returncode == 0


def demo_app_manifest(image: str, edits: Edits = None, pool: str = "") -> str:
    """yaml/demo-deploy.yaml and yaml/demo-service.yaml with the Deployment's image set
    (and with `pool`, the Service in that pool: the global demo's clusters share one name)."""
    edits = edits if edits is not None else Edits()
    out = []
    for path in (YAML_DIR / "demo-deploy.yaml", YAML_DIR / "demo-service.yaml"):
        for doc in documents(path):
            where = f"{doc['metadata'].get('namespace')}/{doc['metadata']['name']}"
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    container["image"] = image
                edits.lines.append(f"Deployment {where}: image {image}")
            if doc["kind"] == "Service" and pool:
                doc["metadata"].setdefault("annotations", {})[POOL] = pool
                edits.lines.append(f"Service {where}: annotation {POOL}: {pool}")
            out.append(doc)
    return yaml.safe_dump_all(out, sort_keys=False)


def _container(deployment: dict, name: str) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def pods(cp, namespace: str, selector: str) -> list:
    out = cp.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return json.loads(out)["items"]


def ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True" and pod["metadata"].get("deletionTimestamp") is None


def rollout(cp, namespace: str, deployment: str, timeout: float = 120.0) -> str:
    """`kubectl rollout status`: every replica updated and available; returns its output."""
    return cp.kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace,
                      f"--timeout={int(timeout)}s", timeout=timeout + 10).stdout


class LogFollower:
    """`kubectl logs -f --prefix` of the pods matching `selector` into `path`, started before they are
    deleted: what they printed up to their exit stays there (a deleted pod's log goes with it)."""

    def __init__(self, cp, namespace: str, selector: str, path: Path):
        argv = [str(binary("kubectl")), f"--kubeconfig={cp.kubeconfig}", "logs", "-f", "-n", namespace,
                "-l", selector, "--prefix", "--tail=-1", "--max-log-requests=10"]
        with open(path, "w") as out:
            self._proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 5            # attached once the logs so far are in (bounded)
        while path.stat().st_size == 0 and self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self):
        """kubectl ends by itself when every pod is gone; else SIGTERM, then SIGKILL, by PID."""
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            _end(self._proc)


class PodExits:
    """Watch the pods of a namespace and remember each container's last terminated state.

    Start it before deleting a pod; `terminated(pod)` then holds {container: state}."""

    def __init__(self, cp, namespace: str, selector: str = ""):
        argv = [str(binary("kubectl")), f"--kubeconfig={cp.kubeconfig}", "get", "pods", "-n", namespace,
                "--watch", "--output-watch-events", "-o", "json"]
        if selector:
            argv += ["-l", selector]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      stdin=subprocess.DEVNULL, text=True)
        self._states = {}
        self._deleted = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            pod = event.get("object", {})
            name = pod.get("metadata", {}).get("name")
            with self._lock:
                if event.get("type") == "DELETED":
                    self._deleted.add(name)
                for status in pod.get("status", {}).get("containerStatuses", []) or []:
                    state = status.get("state", {}).get("terminated")
                    if state:
                        self._states.setdefault(name, {})[status["name"]] = state

    def terminated(self, pod: str) -> dict:
        with self._lock:
            return dict(self._states.get(pod, {}))

    def deleted(self, pod: str) -> bool:
        with self._lock:
            return pod in self._deleted

    def stop(self):
        _end(self._proc)
        self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _end(proc, grace: float = 10.0):
    """SIGTERM to `proc` if it still runs, SIGKILL after `grace` seconds (by PID), and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
