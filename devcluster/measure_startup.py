"""`python -m devcluster.measure_startup [N] [--node]`: time N start-ups.

Start-up is what every test session and demo pays first, so it is worth a
number. Without --node: from ControlPlane.start() to /readyz ok, with binaries
already cached; runs on whatever loopback it is given (host, or a private
namespace under `unshare --net`). With --node (inside `make test`-style
namespaces): a NodeCluster's phases, then mysocketd from the manifest on it --
seconds from `kubectl apply` until a pod is scheduled, running, Ready, and
until an annotated Service answers through the edge -- polled every 50 ms from
here, since the API's timestamps have one-second resolution. Prints each run
and the medians.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .controlplane import ControlPlane


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    node = "--node" in argv
    numbers = [a for a in argv if a != "--node"]
    runs = int(numbers[0]) if numbers else (3 if node else 5)
    results = []
    for i in range(runs):
        results.append(_node_run() if node else _control_plane_run())
        print(f"run {i + 1}: " + "  ".join(f"{k} {v:.2f}s" for k, v in results[-1].items()), flush=True)
    print(f"median of {runs}: " + "  ".join(f"{k} {statistics.median(r[k] for r in results):.2f}s"
                                             for k in results[0]))
    return 0


def _control_plane_run() -> dict:
    started = time.monotonic()
    with ControlPlane():
        return {"ready": time.monotonic() - started}


def _node_run() -> dict:

    from . import workloads
    from .controller import Account
    from .nodecluster import NodeCluster

    with tempfile.TemporaryDirectory(prefix="measure-node-") as tmp, NodeCluster() as cluster:
        timeline = {f"node:{k}": v for k, v in cluster.timeline.items()}
        edge = workloads.edge_for_pods(Path(tmp) / "edge", cluster.uplink)
        with edge:
            cp = cluster.cp
            account = Account.register(edge, Path(tmp) / "account")
            secret = account.write_secret_dir(Path(tmp) / "secret")
            cp.kubectl("create", "namespace", "mysocket")
            cp.kubectl("create", "secret", "generic", "mysocketd", "-n", "mysocket",
                       *[f"--from-file={k}={secret / k}" for k in ("email", "password", "privatekey")])
            cp.kubectl("apply", "-f", "-", input=workloads.demo_app_manifest(cluster.images.demo_app))
            workloads.rollout(cp, "demo-app", "demo-app")
            manifest = workloads.mysocketd_manifest(cluster.images.mysocketd,
                                                    workloads.EdgeAddress.of(edge, cluster.uplink))
            started = time.monotonic()
            cp.kubectl("apply", "-f", "-", input=manifest)
            timeline.update(_pod_phases(cp, edge, started))
    return timeline


def _pod_phases(cp, edge, started, timeout=120.0) -> dict:
    """Seconds from the apply until the first mysocketd pod is scheduled, running, Ready, and
    until the demo app's public name answers through the edge."""
    seen = {}
    while len(seen) < 4 and time.monotonic() - started < timeout:
        now = time.monotonic() - started
        for pod in workloads_pods(cp):
            status = pod.get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            running = any("running" in s.get("state", {}) for s in status.get("containerStatuses", []) or [])
            for phase, reached in (("pod:scheduled", conditions.get("PodScheduled") == "True"),
                                   ("pod:running", running), ("pod:ready", conditions.get("Ready") == "True")):
                if reached:
                    seen.setdefault(phase, now)
        if "pod:exposed" not in seen:
            svc = json.loads(cp.kubectl("get", "svc", "demo-app", "-n", "demo-app", "-o", "json").stdout)
            name = (svc["metadata"].get("annotations") or {}).get("mysocket.io/dnsname")
            if name and edge.get(name)[0] == 200:
                seen["pod:exposed"] = now
        time.sleep(0.05)
    return seen


def workloads_pods(cp):
    from . import workloads
    return workloads.pods(cp, "mysocket", "app.kubernetes.io/name=mysocketd")


if __name__ == "__main__":
    sys.exit(main())
