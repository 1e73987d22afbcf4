"""The chaos suite's world: N exposed Services, one controller, one edge, and a scoreboard.

Each case breaks something real (a process, the edge, the API, the
apiserver), measures how long until traffic flows again, and then asserts
the end state exactly with `World.check()`: the account's sockets on the edge
are exactly the exposed Services (none lost, duplicated or leaked), each
running replica holds every exposed Service's forward (active-active) in one
ssh session per shard of SHARD_SIZE forwards (lib/tunnels.py),
finalizers sit only on exposed Services,
and every exposed Service answers through the edge. The figures go to a table
printed at the end of the run (`make chaos` shows it) and to
.cache/chaos/latest.json.
"""

import inspect
import json
import math
import statistics
import time

from devcluster.stack import Cluster, account_sockets, wait_for
from lib.ownership import socket_name
from lib.services import DNSNAME, FINALIZER
from lib.tunnels import Supervisor

RESULTS = []
STABLE_AFTER = inspect.signature(Supervisor).parameters["stable_after"].default
SHARD_SIZE = inspect.signature(Supervisor).parameters["shard_size"].default


def measure(what, fn, timeout=60.0, interval=0.02):
    """Seconds until fn() is truthy (polled every `interval`); fails after `timeout`."""
    started = time.monotonic()
    wait_for(what, fn, timeout=timeout, interval=interval)
    return time.monotonic() - started


def record(fault, times, counts):
    RESULTS.append({"fault": fault, "runs": len(times), "median_s": round(statistics.median(times), 2),
                    "worst_s": round(max(times), 2), **counts})


class World:
    def __init__(self, cp, edge, account, controllers, namespace, standins):
        self.cp, self.edge, self.account, self.controllers = cp, edge, account, controllers
        self.ns = namespace
        self.cluster = Cluster(cp, namespace)
        self.standins = standins

    def expose(self, names, wait=True):
        body = {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": n, "namespace": self.ns, "annotations": {"mysocket.io/enabled": "true"}},
             "spec": {"selector": {"app": n}, "ports": [{"name": "http", "port": 8000}]}} for n in names]}
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))
        for n in names:
            self.standins.for_service(self.ns, n)
        if wait:
            self.wait_all_answer()

    def services(self):
        out = self.cp.kubectl("get", "services", "-n", self.ns, "-o", "json").stdout
        return {s["metadata"]["name"]: s for s in json.loads(out)["items"]}

    def exposed(self):
        return {n: s for n, s in self.services().items() if not s["metadata"].get("deletionTimestamp")
                and (s["metadata"].get("annotations") or {}).get("mysocket.io/enabled") == "true"}

    def dnsnames(self):
        return {n: (s["metadata"].get("annotations") or {}).get(DNSNAME) for n, s in self.exposed().items()}

    def answers(self, dnsname):
        try:
            return self.edge.get(dnsname, timeout=2)[0] == 200
        except OSError:
            return False

    def all_answer(self):
        names = self.dnsnames()
        return bool(names) and all(d and self.answers(d) for d in names.values())

    def wait_all_answer(self, timeout=60):
        return measure("every exposed Service answering", self.all_answer, timeout=timeout, interval=0.05)

    @property
    def controller(self):
        return self.controllers[0]

    def ssh_children(self):
        return [c for controller in self.controllers for c in controller.ssh_children()]

    def wait_tunnels_up(self, timeout=30, stable=STABLE_AFTER + 0.5):
        """Until every forward has been up `stable` seconds in a row, so the next fault is one fault on a
        steady state, not a flap (a session that dies sooner after coming up backs off: lib/tunnels.py)."""
        wanted = f"mysocketd_tunnels_up {float(len(self.exposed()))}"
        since = [None]

        def steady():
            if not any(wanted in c.metrics() for c in self.controllers):
                since[0] = None
                return False
            since[0] = since[0] or time.monotonic()
            return time.monotonic() - since[0] >= stable

        wait_for(f"all tunnels up for {stable}s", steady, timeout=timeout + stable)

    def counts(self):
        """(lost, duplicated, leaked) sockets of this world on the edge."""
        cluster = self.controller.cluster_name
        wanted = {socket_name(cluster, self.ns, n) for n in self.exposed()}
        names = [s["name"] for s in account_sockets(self.edge, self.account)]
        lost = len(wanted - set(names))
        duplicated = sum(names.count(n) - 1 for n in set(names) if n in wanted)
        leaked = sum(1 for n in names if n not in wanted)
        return {"lost": lost, "duplicated": duplicated, "leaked": leaked}

    def check(self, timeout=60):
        """Converge, then assert the end state exactly; returns the socket counts."""
        exposed = self.exposed()
        wait_for("exactly one socket per exposed Service",
                 lambda: self.counts() == {"lost": 0, "duplicated": 0, "leaked": 0}, timeout=timeout)
        running = [c for c in self.controllers if c.proc is not None and c.proc.poll() is None]
        sessions = math.ceil(len(exposed) / SHARD_SIZE)
        wait_for(f"{sessions} ssh sessions (one per shard) in each running replica",
                 lambda: len(self.ssh_children()) == sessions * len(running), timeout=timeout)
        if exposed:
            self.wait_all_answer(timeout)
        for name, svc in self.services().items():
            has = FINALIZER in (svc["metadata"].get("finalizers") or [])
            assert has == (name in exposed), f"finalizer on {name}: {has}, exposed: {name in exposed}"
        return self.counts()


