"""Figures: an HTTPRoute edit until the edge routes by it, and what visitors saw meanwhile.

A Gateway of class mysocket with one HTTPRoute whose only backend alternates between two Services
(blue, green). Each run is one `kubectl apply` of the route; the time runs from the moment kubectl
starts until the edge answers from the new backend on a new connection (polled every 5 ms at the
Gateway's own address), and is split at kubectl's exit. Throughout, one visitor keeps a keep-alive
connection busy (a request every 10 ms) and another opens a new connection every 10 ms: every answer
that is not a 200 is counted (the tests assert there are none; here it is a figure, not a verdict).
The edge's tunnels for the new backend are made and connected before the table names it (make before
break), and the old backend's are drained, so the time includes that wait.
"""

import http.client
import json
import threading
import time

from devcluster import conformance
from edge.testing import EdgeProcess

ROOT_YAML = conformance.REPO_ROOT / "yaml"
POLL = 0.005
DRAIN = 5.0           # lib/routecontroller.DRAIN: a tunnel the table left keeps serving this long


def _route(ns, backend):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": ns},
            "spec": {"parentRefs": [{"name": "web"}], "rules": [{"backendRefs": [{"name": backend, "port": 8000}]}]}}


def _get(address, port, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "shop.example.com"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace").strip()
    except OSError as e:
        conn.close()
        return None, repr(e)
    finally:
        if own:
            conn.close()


class Visitors:
    """A keep-alive visitor and a new-connection visitor, each a request every 10 ms; failures counted."""

    def __init__(self, address, port):
        self.address, self.port = address, port
        self.requests, self.failed = 0, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(keep,), daemon=True) for keep in (True, False)]

    def _run(self, keep):
        conn = http.client.HTTPConnection(self.address, self.port, timeout=5) if keep else None
        while not self._stop.wait(0.01):
            status, body = _get(self.address, self.port, conn)
            self.requests += 1
            if status != 200:
                self.failed.append((status, body))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(10)


def run(stack, results, deadline, runs=20):
    conformance.install_crds(stack.cp)
    stack.cp.kubectl("apply", "-f", str(ROOT_YAML / "gateway-api" / "gatewayclass.yaml"))
    ns = stack.namespace("routes")
    ips = stack.stand_ins(ns, ["blue", "green"])
    stack.apply_services(ns, ips, annotated=False)
    edge = EdgeProcess(stack.workdir / "edge-routes", log_level="INFO", extra_args=(
        "--socket-addresses", "127.100.9.0/29", "--registration", "open", "--api-listen", "127.0.0.1",
        "--tunnel-server", "127.0.0.1"))
    edge.host = "0.0.0.0"            # every address: the Gateway's own one answers
    with edge:
        edge.host = "127.0.0.1"
        account = stack.account(edge, "acct-routes")
        controller = stack.controller(edge, account, "", "routes")     # Gateways are read cluster-wide
        gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": "web", "namespace": ns},
                   "spec": {"gatewayClassName": "mysocket",
                            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
        stack.cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                "items": [gateway, _route(ns, "blue")]}))
        address = _wait(lambda: _address(stack.cp, ns), 60)
        _wait(lambda: _get(address, edge.http_port)[1] == f"{ns}/blue", 60)
        figures = {"warm": ([], []), "cold": ([], [])}
        with Visitors(address, edge.http_port) as visitors:
            # warm: the other backend's tunnels are still draining (edits closer than DRAIN), so the edit is
            # the table alone; cold: the new backend has no tunnel left, so it waits for one to connect.
            plan = [("warm", 0.3)] * runs + [("cold", DRAIN + 1.5)] * max(1, runs // 4)
            for i, (kind, pause) in enumerate(plan):
                if deadline.left() < 30 + pause:
                    results.note(f"routes: {i} of {len(plan)} edits measured (budget)")
                    break
                time.sleep(pause)
                backend = ("green", "blue")[i % 2]
                t0 = time.monotonic()
                stack.cp.kubectl("apply", "-f", "-", input=json.dumps(_route(ns, backend)))
                t1 = time.monotonic()
                _wait(lambda b=backend: _get(address, edge.http_port)[1] == f"{ns}/{b}", 30, POLL)
                t2 = time.monotonic()
                figures[kind][0].append(t2 - t0)
                figures[kind][1].append(t2 - t1)
                print(f"  {kind} edit {i + 1:2d}: {t2 - t0:.3f}s (after kubectl {t2 - t1:.3f}s)", flush=True)
        controller.stop()
    for kind, words in (("warm", "the new backend's tunnels still up"),
                        ("cold", "the new backend's tunnel made and connected first")):
        totals, after_kubectl = figures[kind]
        results.add(f"routes.{kind}_edit_to_edge", totals, "s",
                    note=f"kubectl apply of an HTTPRoute -> the edge routes by it ({words})")
        results.add(f"routes.{kind}_edit_after_kubectl", after_kubectl, "s", note="from kubectl's exit")
    results.add("routes.visitor_requests_during_edits", [visitors.requests], "requests")
    results.add("routes.visitor_failures_during_edits", [len(visitors.failed)], "requests",
                note="keep-alive and new-connection visitors, every 10 ms each, all through the edits")


def _address(cp, ns):
    out = cp.kubectl("get", "gateway", "web", "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    status = json.loads(out.stdout).get("status") or {}
    programmed = any(c["type"] == "Programmed" and c["status"] == "True" for c in status.get("conditions") or [])
    return next((a["value"] for a in status.get("addresses") or [] if a["type"] == "IPAddress"), None) \
        if programmed else None


def _wait(fn, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"not after {timeout}s")
