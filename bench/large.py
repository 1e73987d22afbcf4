"""The issue-24 table: 100 and 1,000 exposed Services in a cluster of 10,000, two replicas, churn elsewhere.

One namespace holds 10,000 Services: 1,000 candidates with stand-ins on their
ClusterIPs (bench.backend) and 9,000 others, 1,000 of which have an
EndpointSlice of 10 endpoints. Nothing here runs kube-controller-manager, so
the "pod churn of 10 pods/s elsewhere" is what it would write: 10 updates a
second to those slices, one endpoint's readiness flipped each time.

Each scene (100 or 1,000 exposed, the code before or after) starts two
replicas (--leader-election, watching the namespace: every one of the 10,000
Services and their slices) with a fresh account, and measures:

- all_answer: from the start of one `kubectl annotate -l` of the N Services
  until every name answers through the edge (both replicas hold a tunnel for
  each; "two edge connections per Service" are the two replicas' tunnels, as
  the edge has one node);
- pss: each replica's PSS with every ssh process it runs (MB);
- cpu_idle / cpu_churn: each replica's CPU (its own and its children's) over
  20 s with nothing to do, then over 20 s of the churn, in % of one core;
- recovery: under a load of one request every 20 ms to each name the killed
  ssh process carried (before: one per Service; after: a session of up to
  20), SIGKILL of it in the first replica: how many names it carried, how long
  until that replica reports every tunnel up again, and how many requests
  failed (the other replica's tunnels serve the names meanwhile).

Between scenes the controllers stop (SIGTERM, nothing remote deleted) and the
annotations are taken off, so each scene starts from the same cluster.
"""

import json
import os
import threading
import time

import psutil

from bench import probe
from bench.stack import dnsnames, forwarded, tunnels_up

TOTAL = 10_000
CANDIDATES = 1_000
SLICES = 1_000
CHURN_PER_S = 10
OURS = ("mysocket.io/enabled", "mysocket.io/dnsname", "mysocket.io/socket-id", "mysocket.io/last-valid",
        "mysocket.io/served-by")


def populate(stack):
    """The 10,000-Service namespace: {candidate name: ClusterIP}, and the churned slices' names."""
    ns = stack.namespace("large")
    names = [f"c{i:04d}" for i in range(CANDIDATES)]
    ips = stack.stand_ins(ns, names)
    items = [_service(ns, n, {"group": f"g{i // 100}"}, ips[n]) for i, n in enumerate(names)]
    items += [_service(ns, f"o{i:05d}", {}, None) for i in range(TOTAL - CANDIDATES)]
    started = time.monotonic()
    for chunk in range(0, len(items), 500):
        stack.cp.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                "items": items[chunk:chunk + 500]}), timeout=300)
    slices = [f"o{i:05d}" for i in range(SLICES)]
    for chunk in range(0, len(slices), 250):
        stack.cp.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            _slice(ns, n, ready=True) for n in slices[chunk:chunk + 250]]}), timeout=300)
    print(f"  {TOTAL} Services and {SLICES} EndpointSlices in {time.monotonic() - started:.0f}s", flush=True)
    return ns, ips, slices


def _service(ns, name, labels, ip):
    spec = {"selector": {"app": name}, "ports": [{"name": "http", "port": 8000}]}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec}


def _slice(ns, service, ready, flip=None):
    endpoints = [{"addresses": [f"10.244.{i}.{hash(service) % 250 + 1}"],
                  "conditions": {"ready": ready if i != flip else not ready}} for i in range(10)]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints, "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]}


class Churn(threading.Thread):
    """CHURN_PER_S EndpointSlice updates a second, through one long-lived `kubectl replace` per batch."""

    def __init__(self, stack, ns, slices):
        super().__init__(daemon=True)
        self.stack, self.ns, self.slices = stack, ns, slices
        self.halt = threading.Event()
        self.updates = 0

    def run(self):
        i = 0
        while not self.halt.is_set():
            started = time.monotonic()
            batch = [_slice(self.ns, self.slices[(i + k) % len(self.slices)], True, flip=(i + k) % 10)
                     for k in range(CHURN_PER_S)]
            i += CHURN_PER_S
            self.stack.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                                  input=json.dumps({"apiVersion": "v1", "kind": "List", "items": batch}),
                                  timeout=60, check=False)
            self.updates += len(batch)
            self.halt.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def stop(self):
        self.halt.set()
        self.join(30)


def family(pid):
    """[the process, every descendant] (the replica with its ssh sessions and their children)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pss(pid):
    total = 0
    for p in family(pid):
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


def cpu_percent(pids, seconds):
    """% of one core each pid (with its descendants, live ones and those reaped meanwhile) used."""
    def total(pid):
        t = 0.0
        for p in family(pid):
            try:
                c = p.cpu_times()
                t += c.user + c.system + (c.children_user + c.children_system if p.pid == pid else 0)
            except psutil.NoSuchProcess:
                pass
        return t
    before = [total(p) for p in pids]
    time.sleep(seconds)
    return [100.0 * (total(p) - b) / seconds for p, b in zip(pids, before)]


def scene(stack, edge, results, ns, ips, slices, count, code, root):
    tag = f"{code}{count}"
    account = stack.account(edge, f"acct-{tag}")
    cluster = f"lg-{tag}"
    args = ["--leader-election", "--lease-name", f"lg-{tag}"]
    replicas = [stack.controller(edge, account, ns, cluster, workdir=stack.workdir / f"large-{tag}-{r}", root=root,
                                 extra_args=args) for r in "ab"]
    key = f"large.{count}.{code}"
    names = [f"c{i:04d}" for i in range(count)]
    groups = ",".join(f"g{i}" for i in range((count + 99) // 100))
    try:
        _wait(lambda: any(r.http("/readyz")[1].strip() == "leader" for r in replicas), 60, "a leader")
        t0 = time.monotonic()
        stack.cp.kubectl("annotate", "-n", ns, "services", "-l", f"group in ({groups})",
                         "mysocket.io/enabled=true", timeout=300)
        results.add(f"{key}.part.kubectl_annotate", [time.monotonic() - t0], "s", note="kubectl itself")
        done = probe.wait_all(edge.http_port, {n: f"{ns}/{n}" for n in names}, 900,
                              names=lambda: dnsnames(edge, account, cluster, ns), forwarded=lambda: forwarded(edge))
        results.add(f"{key}.all_answer", [max(done.values()) - t0], "s", target=30.0 if count == 1000 else None,
                    note="one kubectl annotate -l of the N Services until every name answers")
        for r in replicas:
            _wait(lambda r=r: tunnels_up(r) == count, 900, f"{r.workdir.name}: {count} tunnels up")
        pids = [r.proc.pid for r in replicas]
        _settle(pids)
        results.add(f"{key}.pss", [pss(p) for p in pids], "MB", target=200.0 if count == 1000 else None,
                    note="each replica with its ssh processes (PSS)")
        results.add(f"{key}.ssh_processes", [len(r.ssh_children()) for r in replicas], "n")
        results.add(f"{key}.cpu_idle", cpu_percent(pids, 20), "%", target=2.0,
                    note="each replica and its children, 20 s with nothing to do, % of one core")
        churn = Churn(stack, ns, slices)
        churn.start()
        try:
            results.add(f"{key}.cpu_churn", cpu_percent(pids, 20), "%",
                        note=f"the same under {CHURN_PER_S} EndpointSlice updates/s of Services nobody exposes")
        finally:
            churn.stop()
        _recovery(edge, results, key, replicas[0], count, account, cluster, ns)
    finally:
        _take_away(stack, ns, groups, replicas)


def _take_away(stack, ns, groups, replicas):
    """The next scene starts from the same cluster: the leader takes the names away (sockets deleted,
    finalizers released) before the replicas stop; whatever is left is stripped by hand."""
    selector = f"group in ({groups})"
    stack.cp.kubectl("annotate", "-n", ns, "services", "-l", selector, "mysocket.io/enabled-", timeout=300,
                     check=False)

    def released():
        out = stack.cp.kubectl("get", "services", "-n", ns, "-l", selector, "-o", "jsonpath={..finalizers}",
                               check=False).stdout
        return "mysocket.io/cleanup" not in out
    try:
        _wait(released, 300, "every finalizer released")
    except TimeoutError as e:
        print(f"  {e}: stripping by hand", flush=True)
    for r in replicas:
        r.stop()
        r.reap_orphans()
    stack.cp.kubectl("annotate", "-n", ns, "services", "-l", selector, *[f"{a}-" for a in OURS[1:]],
                     timeout=300, check=False)


def _settle(pids, limit=120):
    """Until the replicas are done with the burst (Events posted, the first sweep's write-backs): 5 s
    windows until both stay under 5 % of a core, at most `limit` seconds. "At rest" means nothing to do."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and max(cpu_percent(pids, 5)) >= 5.0:
        pass


def _recovery(edge, results, key, replica, count, account, cluster, ns):
    """SIGKILL one ssh process of the first replica under load on the names it carried."""
    victim = min(replica.ssh_children(), key=lambda p: p.create_time())     # the oldest: a full shard
    carried = _names_of(replica, victim, ns)
    hosts = dnsnames(edge, account, cluster, ns)
    load = [hosts[n] for n in carried if n in hosts]
    failed, sent, halt = [0], [0], threading.Event()

    def hammer():
        while not halt.is_set():
            for host in load:
                status, _ = probe.get(edge.http_port, host)
                sent[0] += 1
                failed[0] += status != 200
            time.sleep(probe.POLL)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    time.sleep(1.0)
    killed = time.monotonic()
    victim.kill()
    _wait(lambda: tunnels_up(replica) < count, 10, "the replica to see the death")
    _wait(lambda: tunnels_up(replica) == count, 120, "every tunnel of the replica up again")
    back = time.monotonic() - killed
    time.sleep(1.0)
    halt.set()
    thread.join(10)
    results.add(f"{key}.recovery.names", [len(carried)], "n", note="names the killed ssh process carried")
    results.add(f"{key}.recovery.seconds", [back], "s", note="SIGKILL until that replica has every tunnel up")
    results.add(f"{key}.recovery.failed_requests", [failed[0]], "n",
                note=f"of {sent[0]} requests to those names during the recovery (the other replica serves them)")


def _names_of(replica, proc, ns):
    """The Services whose forward this ssh process held: its -R (one per process), or the log's session."""
    argv = proc.cmdline()
    if "-R" in argv:
        port = argv[argv.index("-R") + 1].split(":")[0]
        for line in replica.log_path.read_text(errors="replace").splitlines():
            if f"forward of port {port} " in line:
                return [json.loads(line)["service"]]
        return []
    control = argv[argv.index("-S") + 1].rsplit("-", 1)[1]
    names = set()
    for line in replica.log_path.read_text(errors="replace").splitlines():
        if "tunnel up" in line and f"#{control})" in line:
            names.add(json.loads(line)["service"])
    return sorted(names)


def _wait(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        time.sleep(0.1)


def run(stack, results, deadline, before=None):
    """before: a checkout of the code to compare with (mysocketd.py and lib/), or None."""
    print(f"  load {os.getloadavg()}", flush=True)
    with stack.edge("edge-large") as edge:
        ns, ips, slices = populate(stack)
        codes = [("before", before), ("after", None)] if before else [("after", None)]
        for count in (100, CANDIDATES):
            for code, root in codes:
                if deadline.left() < (400 if count == CANDIDATES else 120):
                    results.note(f"large: {code} at {count} skipped ({deadline.left():.0f}s of the budget left)")
                    continue
                print(f"  {code}, {count} exposed (load {os.getloadavg()[0]:.1f})", flush=True)
                started = time.monotonic()
                try:
                    scene(stack, edge, results, ns, ips, slices, count, code, root)
                except TimeoutError as e:   # said, and the next scene still runs (the code after all)
                    results.note(f"large: {code} at {count}: {e}")
                print(f"  {code}, {count}: {time.monotonic() - started:.0f}s", flush=True)
        results.note(f"large: load average at the end {os.getloadavg()}")
