"""What the Gateway/Ingress tests share (a uniquely named module, importable beside other conftests)."""

import http.client
import json
import threading
import time
from pathlib import Path

from devcluster import conformance
from devcluster.controller import ControllerProcess
from devcluster.stack import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
GATEWAY_CLASS = REPO_ROOT / "yaml" / "gateway-api" / "gatewayclass.yaml"
MANIFEST = REPO_ROOT / "yaml" / "mysocketd.yaml"
GW = "gateway.networking.k8s.io/v1"


def prepare(cp):
    """A control plane as a user prepares it: the Gateway API CRDs (the pinned release's, built from the
    module), mysocketd's manifest (its RBAC, its IngressClass), the GatewayClass; returns the kubeconfig of
    mysocketd's ServiceAccount."""
    conformance.install_crds(cp)
    cp.kubectl("apply", "-f", str(MANIFEST))
    cp.kubectl("apply", "-f", str(GATEWAY_CLASS))
    return cp.service_account_kubeconfig("mysocket", "mysocketd")


def mysocketd(workdir, kubeconfig, edge, account, cluster_name=""):
    return ControllerProcess(workdir, kubeconfig=kubeconfig, edge=edge, account=account, cluster_name=cluster_name,
                             log_level="INFO", extra_args=["--resync-seconds", "5"])


def apply(cp, *objects):
    cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def get(cp, kind, namespace, name):
    result = cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj, type_, parent=0):
    """A condition of a Gateway (parent=None) or of a route's status.parents[parent]."""
    status = (obj or {}).get("status") or {}
    conds = status.get("conditions") if parent is None else ((status.get("parents") or [{}])[parent].get(
        "conditions") if status.get("parents") else [])
    return next((c for c in conds or [] if c.get("type") == type_), None)


def gateway(ns, name="web", allowed="Same"):
    return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": "mysocket", "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": allowed}}}]}}


def route(ns, rules, name="r", parent="web"):
    return {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns},
            "spec": {"parentRefs": [{"name": parent}], "rules": rules}}


def service(ns, name, ip, port=8000):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "selector": {"app": name}, "ports": [{"name": "http", "port": port}]}}


def gateway_address(cp, namespace, name, kind="IPAddress", timeout=60):
    """The Gateway's own address at the edge (or its name there: kind Hostname), once it is Programmed at
    its generation."""
    def programmed():
        gw = get(cp, "gateway", namespace, name)
        c = condition(gw, "Programmed", parent=None)
        if c and c["status"] == "True" and c["observedGeneration"] == gw["metadata"]["generation"]:
            return next(a["value"] for a in gw["status"]["addresses"] if a["type"] == kind)
        return None
    return wait_for(f"Gateway {namespace}/{name} Programmed with an address", programmed, timeout=timeout)


def fetch(edge, address, path="/", host="shop.example.com", timeout=5.0):
    """(status, body) of one GET to the edge's HTTP port at `address` on a new connection; (None, error) on
    failure."""
    conn = http.client.HTTPConnection(address, edge.http_port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace").strip()
    except OSError as e:
        return None, repr(e)
    finally:
        conn.close()


class Load:
    """GETs every `interval` s on a thread of its own, each on a new connection, each answer kept with its time."""

    def __init__(self, edge, address, path="/", interval=0.01):
        self.args = (edge, address, path)
        self.interval = interval
        self.answers = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)

    def _run(self):
        while not self._stop.wait(self.interval):
            status, body = fetch(*self.args)
            self.answers.append((time.monotonic(), status, body))

    def since(self, t):
        return [a for a in self.answers if a[0] >= t]

    def wait(self, n, after=0.0, timeout=60.0):
        """The answers since `after`, once there are n of them (or timeout s passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.since(after)) < n:
            time.sleep(0.05)
        return self.since(after)

    @staticmethod
    def failed(answers):
        return [a for a in answers if a[1] != 200]
