"""Verbs the integration tests, the chaos suite, the demo and the benchmarks share.

Small on purpose: kubectl as admin on one namespace, a bounded wait, and the
edge's view of an account. Each reads like the sentence in a test it serves.
"""

import json
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class Cluster:
    """Small verbs on the test's namespace, through kubectl as admin."""

    def __init__(self, control_plane, namespace):
        self.cp = control_plane
        self.ns = namespace

    def kubectl(self, *args, **kwargs):
        return self.cp.kubectl(*args, "-n", self.ns, **kwargs)

    def service(self, name, ports=((8000, "http"),), annotations=None, **spec):
        body = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": self.ns, "annotations": annotations or {}},
                "spec": {"selector": {"app": name},
                         "ports": [{"name": n, "port": p, "protocol": "TCP"} for p, n in ports], **spec}}
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))
        return self.get(name)

    def get(self, name):
        result = self.kubectl("get", "service", name, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def annotate(self, name, **annotations):
        """annotate(name, **{"mysocket.io/port": "9090"}); a value None removes the annotation."""
        args = [f"{k}-" if v is None else f"{k}={v}" for k, v in annotations.items()]
        self.kubectl("annotate", "--overwrite", "service", name, *args)

    def protected_secret(self, name, username, password, opt_in=True):
        """A Secret for mysocket.io/protected-secret, readable by mysocketd as the README says."""
        rbac = (REPO_ROOT / "yaml" / "optional" / "protected-secret-rbac.yaml").read_text()
        rbac = rbac.replace("web-namespace", self.ns)
        self.cp.kubectl("apply", "-f", "-", input=rbac)
        labels = {"mysocket.io/protected-secret": "true"} if opt_in else {}
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": self.ns, "labels": labels},
                "stringData": {"username": username, "password": password}}
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))

    def delete(self, name, wait=False):
        self.kubectl("delete", "service", name, f"--wait={'true' if wait else 'false'}")

    def events(self, name, component=None):
        """(type, reason, message) of the Events on `name`; only those `component` posted, if given (the
        apiserver posts some of its own, e.g. ClusterIPNotAllocated from its periodic ClusterIP repair)."""
        out = self.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return [(e["type"], e["reason"], e["message"]) for e in json.loads(out.stdout)["items"]
                if component is None or component in (e.get("reportingComponent"), (e.get("source") or {}).get(
                    "component"))]


def wait_for(what, fn, timeout=20.0, interval=0.1):
    """Poll fn until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # the system is converging; keep the last error for the message
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def account_sockets(edge, account):
    token = edge.login(account.email, account.password)
    return edge.api("GET", "/connect", token=token).body


def annotations(svc):
    """A Service's annotations ({} for a missing Service)."""
    return (svc or {}).get("metadata", {}).get("annotations") or {}


def answered(edge, dnsname):
    """The body of a 200 through the edge's HTTP front, else None."""
    status, body = edge.get(dnsname)
    return body if status == 200 else None


def exposed(cluster, edge, name):
    """Wait until the Service carries its dnsname and a pod answers there; return the dnsname."""
    dnsname = wait_for(f"{name}'s dnsname annotation",
                       lambda: annotations(cluster.get(name)).get("mysocket.io/dnsname"))
    wait_for(f"a pod answering at {dnsname}", lambda: answered(edge, dnsname))
    return dnsname
