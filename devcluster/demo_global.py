"""`make demo-global`: one public name served by two clusters through three edge nodes on PostgreSQL,
then one edge node SIGKILLed mid-run, without a failed request.

    python -m devcluster.demo_global      (inside a private network namespace; `make demo-global` does that)

Why it is shaped this way:
- The parts are the ones the tests use, put together as a user would:
  PostgreSQL run as the postgres user (edge.pgtesting), three `python -m edge`
  nodes on it (edge.clustertesting), two control planes each with a real node
  (devcluster.nodecluster: containerd, kubelet and kube-proxy in namespaces of
  their own, so two run side by side; tests/node proves they do not meet), and
  in each cluster mysocketd installed from yaml/mysocketd.yaml and the demo app
  by `make demo`'s own steps (devcluster.demo.Demo), the Service put in one pool.
  Each cluster has its own identity (the UID of its kube-system namespace); both
  use one account.
- Pods must reach every edge node, and loopback addresses are not routable from
  a node's namespace: each edge node listens on an address of its own (EDGE_BASE,
  documentation addresses) on this namespace's lo, which pods reach through
  their node's default route, like three hosts behind one name; same ports on
  each. mysocketd's API URL is the last node's (pods have no DNS here, so no name
  carrying every address); that node is never the one killed.
- The visitor is curl, given the three addresses (devcluster.visitors says
  exactly what counts as failed and as in flight).
- Every wait is bounded; a failure names its step and shows the logs that
  explain it; the teardown always runs: mysocketd's Deployments first (exit
  codes shown), then the edge nodes, PostgreSQL and the clusters, by PID.
"""

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge.clustertesting import ClusterOptions, EdgeCluster
from edge.pgtesting import PostgresServer

from . import visitors, workloads
from . import demo as demo_steps
from .demo import DNSNAME, MYSOCKETD_PODS, NAMESPACE, SERVICE, WAIT_SECONDS, Demo, DemoFailed
from .edgenodes import kill_node
from .netns import add_cluster_ip, assert_private_netns
from .nodecluster import NodeCluster
from .stack import wait_for

CLUSTERS = ("cluster-a", "cluster-b")
EDGE_BASE = "192.0.2."          # node i on 192.0.2.<i>, on this namespace's lo
POOL = "demo"
REQUESTS = 60
STEADY_INTERVAL = 0.15          # the run with a kill: a request every 150 ms, the kill after 20 of them
KILL_AFTER = 20 * STEADY_INTERVAL + STEADY_INTERVAL / 3
RECOVERY_SECONDS = 30.0         # the edge's own figure is ~3.4 s (README, `make bench`)


class GlobalDemo:
    def __init__(self, out, workdir):
        self.out, self.workdir = out, Path(workdir)
        self.pg = self.edge = None
        self.sides = {}                 # cluster name -> Demo (its cluster, mysocketd, demo app)
        self.cluster_of = {}            # demo pod -> its cluster's name
        self._token = ""
        self.result = {"workdir": str(self.workdir)}

    def say(self, text=""):
        print(text, file=self.out, flush=True)

    def show(self, text, indent="    "):
        for line in text.rstrip("\n").splitlines():
            self.say(indent + line)

    @property
    def api_node(self):
        return self.edge.nodes[-1]

    # -- the steps -----------------------------------------------------------------

    def start_edge(self):
        self.pg = PostgresServer()
        self.pg.init()
        self.pg.start()
        self.say(f"    PostgreSQL {self.pg.url('edge')} (run as the postgres user)")
        for i in range(3):
            add_cluster_ip(f"{EDGE_BASE}{i + 1}")
        options = ClusterOptions(admin=False, base=EDGE_BASE, extra_args=("--registration", "open"))
        self.edge = EdgeCluster(self.workdir / "edge", self.pg.new_database("edge"), 3, options)
        self.edge.__enter__()           # starts the nodes one by one (the context manager's only start)
        self.edge.wait_live(3)
        for node in self.edge.nodes:
            self.say(f"    edge node {node.host}: API :{node.api_port}  SSH :{node.ssh_port}  HTTP :{node.http_port}"
                     f"  (pid {node.pid})")
        self.say(f"    every node sees 3 live nodes (GET /health: {self.edge.health(self.api_node)[1]['live_nodes']})")

    def start_clusters(self):
        for name in CLUSTERS:
            side = self.sides[name] = Demo(self.out, self.workdir / name)
            side.cluster = NodeCluster(workdir=side.workdir / "cluster")
            side.cluster.start()
            t = side.cluster.timeline
            self.say(f"    {name}: kube-apiserver {side.cp.server}; node {side.cluster.node_name} Ready at "
                     f"{t['node_ready']:.1f}s (containerd, kubelet, kube-proxy)")
            side.pod_edge = workloads.EdgeAddress.of(self.api_node, self.api_node.host)
            side.pool = POOL
            uid = side.cp.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
            self.say(f"    {name}: its identity, the UID of kube-system: {uid}")

    def register_account(self):
        first, *others = self.sides.values()
        first.edge = self.api_node
        first.register_account()
        for side in others:
            side.account_dir = first.account_dir
        self.say("    both clusters use this account (one Secret, created in each)")

    def install(self):
        for name, side in self.sides.items():
            self.say(f"    --- {name} ---")
            side.create_secret()
            side.apply_manifest()

    def deploy(self):
        for name, side in self.sides.items():
            self.say(f"    --- {name} ---")
            side.apply_demo_app()
            pods = workloads.pods(side.cp, NAMESPACE, f"app={SERVICE}")
            side.result["pods"] = sorted(p["metadata"]["name"] for p in pods)
        self.cluster_of = {pod: name for name, side in self.sides.items() for pod in side.result["pods"]}

    def wait_exposed(self):
        names = {}
        for name, side in self.sides.items():
            def dnsname(cp=side.cp):
                svc = json.loads(cp.kubectl("get", "service", SERVICE, "-n", NAMESPACE, "-o", "json").stdout)
                return (svc["metadata"].get("annotations") or {}).get(DNSNAME)
            names[name] = wait_for(f"{name}'s {DNSNAME} annotation", dnsname, timeout=WAIT_SECONDS, interval=0.2)
            self.say(f"    {name}: {DNSNAME}: {names[name]}")
        if len(set(names.values())) != 1:
            raise DemoFailed(f"the pool's Services have different public names: {names}")
        dnsname = self.result["dnsname"] = names[CLUSTERS[0]]
        self.visitor = visitors.Visitor(dnsname, self.api_node.http_port, [n.host for n in self.edge.nodes])
        self.say(f"    the public name: {self.visitor.url} (A records: {', '.join(self.visitor.addresses)})")
        seen, tries = set(), [0]

        def all_answered():
            tries[0] += 1
            answer = self.visitor.get(tries[0])
            seen.add(answer.pod)
            return seen >= set(self.cluster_of)
        wait_for(f"all {len(self.cluster_of)} pods of both clusters to answer", all_answered,
                 timeout=WAIT_SECONDS, interval=0.05)
        self.say(f"    all {len(self.cluster_of)} pods of both clusters have answered ({tries[0]} requests)")
        self.show_tunnels()

    def curl_table(self):
        self.say(f"    $ {self.visitor.shown().replace('seq N', f'seq {REQUESTS}')} | sort | uniq -c")
        run = self.visitor.run(REQUESTS)
        self._print_run(run)
        if run.failed:
            raise DemoFailed(f"{len(run.failed)} of {REQUESTS} requests failed")
        self.result["counts"] = dict(run.pods())

    def kill_one(self):
        victim = self.victim()
        self.say(f"    the same loop, a request every {STEADY_INTERVAL * 1000:.0f} ms; after {KILL_AFTER:.2f} s, "
                 f"SIGKILL to edge node {victim.host} (pid {victim.pid} and its data plane)")
        recovery = Recovery(self, victim)
        run = self.visitor.run(REQUESTS, STEADY_INTERVAL, action=lambda: recovery.start(kill_node(victim)),
                               action_after=KILL_AFTER)
        if run.action_at is None:
            raise DemoFailed("the edge node was not killed during the run")
        self._print_run(run)
        after = [a for a in run.answers if a.started > run.action_at]
        refused = sum(a.order[0] == victim.host and a.ok for a in after)
        self.say(f"    requests: {len(run.answers)}, {len(after)} of them after the kill ({refused} found "
                 f"{victim.host} refusing first and curl went on to the next address); failed: {len(run.failed)}; "
                 f"in flight on the killed node and retried by the client: {len(run.in_flight)}")
        for failed, retry in run.in_flight:
            self.say(f"      in flight: {failed.why()}; retried: {retry.why()}")
        for failed in run.failed:
            self.say(f"      failed: sent {failed.started - run.action_at:+.2f}s from the kill to "
                     f"{','.join(failed.order)} in that order: {failed.why()}")
        self.result.update(failed=len(run.failed), in_flight=len(run.in_flight), after_kill=len(after),
                           counts_kill=dict(run.pods()), victim=victim.host)
        recovery.join(RECOVERY_SECONDS)
        if recovery.back_at is None:
            self.show_tunnels()
            raise DemoFailed(f"the pool's tunnels were not all connected on two live nodes {RECOVERY_SECONDS:.0f}s "
                             f"after the kill (above: where they are; the edge nodes' logs below say why)")
        self.say(f"    after the kill: {victim.host} declared dead by the others at "
                 f"{recovery.dead_at - run.action_at:.2f}s; every tunnel of the pool placed on a live node and "
                 f"connected, on two of them, at {recovery.back_at - run.action_at:.2f}s (GET /connect):")
        self.show_tunnels()
        if run.failed:
            raise DemoFailed(f"{len(run.failed)} of {len(run.answers)} requests failed after an edge node's SIGKILL")

    STEP_LIST = (
        ("starting PostgreSQL and three edge nodes on it", start_edge, ("edge",)),
        ("starting two clusters, each a control plane and a real node", start_clusters, ("clusters",)),
        ("registering one account on the edge", register_account, ("edge",)),
        ("installing mysocketd in each cluster (the Secret, then yaml/mysocketd.yaml)", install,
         ("clusters", "mysocketd")),
        (f"deploying the demo app in each cluster, its Service in pool {POOL!r}", deploy, ("clusters",)),
        ("waiting for the pool's public name and every pod to answer", wait_exposed, ("mysocketd", "edge")),
        (f"curling the public name {REQUESTS} times, the edge nodes' addresses in turn", curl_table,
         ("edge", "mysocketd")),
        ("again at a steady rate, and one edge node SIGKILLed mid-run", kill_one, ("edge", "mysocketd")),
    )

    # -- what the edge says --------------------------------------------------------------

    def sockets(self):
        """The account's sockets, as the API node answers (logging in again when the token expired)."""
        resp = self.api_node.api("GET", "/connect", token=self._token)
        if resp.status == 401:
            account = self.sides[CLUSTERS[0]].account_dir
            self._token = self.api_node.login((account / "email").read_text(), (account / "password").read_text())
            resp = self.api_node.api("GET", "/connect", token=self._token)
        return {s["dnsname"]: s for s in resp.body}

    def tunnels(self):
        return self.sockets()[self.result["dnsname"]]["tunnels"]

    def show_tunnels(self):
        by_node = {}
        for t in self.tunnels():
            by_node.setdefault(t["tunnel_server"], []).append(t)
        for host, held in sorted(by_node.items()):
            connected = sum(1 for t in held if t.get("connected"))
            self.say(f"    edge node {host}: {len(held)} tunnels of the pool's socket ({connected} connected)")

    def victim(self):
        """The node holding most connected tunnels of the pool, never the one mysocketd's API URL names."""
        counts = {}
        for t in self.tunnels():
            if t.get("connected"):
                counts[t["tunnel_server"]] = counts.get(t["tunnel_server"], 0) + 1
        candidates = [n for n in self.edge.nodes if n is not self.api_node]
        return max(candidates, key=lambda n: (counts.get(n.host, 0), n.host))

    def recovered(self, victim):
        tunnels = self.tunnels()
        on = {t["tunnel_server"] for t in tunnels if t.get("connected")}
        return all(t["tunnel_server"] != victim.host and t.get("connected") for t in tunnels) and len(on) >= 2

    def _print_run(self, run):
        self.show(visitors.table(run, self.cluster_of))
        self.say(f"    answers through each edge node: {visitors.per_edge(run)}")

    # -- failure and teardown ------------------------------------------------------------

    def log_tails(self, which):
        tails = []
        if "edge" in which and self.edge is not None:
            tails += [(f"edge node {n.host} ({n.log_path})", n.log_tail(15)) for n in self.edge.nodes]
        for name, side in self.sides.items():
            which_side = tuple(w.replace("clusters", "cluster") for w in which if w != "edge")
            tails += [(f"{name}: {what}", tail) for what, tail in side.log_tails(which_side)]
        return tails

    def teardown(self):
        self.say("==> tearing down: mysocketd in each cluster (kubectl delete: SIGTERM to its pods), "
                 "the edge nodes, PostgreSQL, the clusters")
        codes, follows = {}, []
        for name, side in self.sides.items():
            if side.cluster is not None and side.cluster.node is not None:
                follows.append(workloads.LogFollower(side.cp, "mysocket", MYSOCKETD_PODS,
                                                     self.workdir / f"{name}-mysocketd.log"))
        for name, side in self.sides.items():
            for pod, code in (side._stopping(f"{name}'s mysocketd", side._delete_mysocketd) or {}).items():
                codes[f"{name}/{pod}"] = code
        for follow in follows:
            follow.stop()
        for what, stop in (("edge nodes", self.edge and self.edge.stop), ("PostgreSQL", self.pg and self.pg.close),
                           *((name, side.cluster and side.cluster.stop) for name, side in self.sides.items())):
            if stop:
                try:
                    stop()
                except Exception as e:  # noqa: BLE001 - keep stopping the others
                    self.say(f"    could not stop {what}: {e}")
        for pod, code in sorted(codes.items()):
            self.say(f"    mysocketd pod {pod} exited with code {code} after SIGTERM")
        self.result["exit_codes"] = codes
        return codes


class Recovery:
    """From a node's kill on, polled every 100 ms on a thread of its own (the visitor keeps its pace):
    when the API node stops counting the node live (dead_at), and when every tunnel of the pool is off
    it and connected, on two live nodes (back_at); monotonic instants, None until seen."""

    def __init__(self, demo, victim):
        self.demo, self.victim = demo, victim
        self.dead_at = self.back_at = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self, killed_at):
        self._deadline = killed_at + RECOVERY_SECONDS
        self._thread.start()
        return killed_at

    def join(self, timeout):
        if self._thread.ident is not None:         # started
            self._thread.join(timeout)

    def _watch(self):
        edge, api = self.demo.edge, self.demo.api_node
        while self.back_at is None and time.monotonic() < self._deadline:
            try:
                if self.dead_at is None and len(edge.health(api)[1].get("live_nodes", ())) == len(edge.nodes) - 1:
                    self.dead_at = time.monotonic()
                if self.dead_at is not None and self.demo.recovered(self.victim):
                    self.back_at = time.monotonic()
            except OSError:
                pass                    # the API node is busy; the next poll asks again
            time.sleep(0.1)


def run(out=sys.stdout, workdir=None):
    """Run the global demo; print the story to `out`; return a dict with dnsname, counts (pod -> answers
    of the first run), counts_kill, failed, in_flight, victim and exit_codes. Raises DemoFailed."""
    assert_private_netns()
    demo = GlobalDemo(out, workdir or tempfile.mkdtemp(prefix="mysocketd-demo-global-"))
    return demo_steps.conduct(demo, own_dir=workdir is None, summary=lambda r: (
        f"{r['dnsname']} served by {len(r['counts'])} pods of {len(CLUSTERS)} clusters; {r['failed']} failed "
        f"requests with edge node {r['victim']} killed"))


if __name__ == "__main__":
    sys.exit(demo_steps.main(run, "demo-global"))
