"""Figures 3 and 4: the 100-Service burst, and what a controller costs at 0, 100 and 300 Services.

The first controller walks up the scale: idle with 0 Services, the burst of
100 (burst run 1), idle at 100, another 200 at once, idle at 300. Further
burst runs each get a fresh namespace, account and controller, so every run
starts from the same state (the controller before is stopped first, so it
does not compete for the CPU).

"Idle" starts 2 s after the controller reports every tunnel up (after that it
has nothing to do but supervise) and lasts 10 s, cut into 1 s slices: the CPU %
of each slice and the RSS at its end are the samples, so the figure shows
the spread and not just one average.
"""

import time

import psutil

from bench import burst
from bench.stack import Scene, tree_memory, wait_settled

BURST = 100
MORE = 200


def new_scene(stack, edge, tag, root=None):
    account = stack.account(edge, f"acct-{tag}")
    ns = stack.namespace(tag)
    controller = stack.controller(edge, account, ns, tag, root=root)
    return Scene(stack, edge, account, controller, ns, tag, {})


def kubectl_apply_alone(stack, tag):
    """Seconds one `kubectl apply` takes to create 100 Services that nothing exposes."""
    namespace = stack.namespace(tag)
    names = [f"b{i:03d}" for i in range(BURST)]
    return stack.apply_services(namespace, stack.stand_ins(namespace, names), annotated=False)


def idle(scene, results, count, seconds=10):
    wait_settled(scene.controller, count, timeout=120)
    time.sleep(2.0)                 # let the last TunnelUp Events and the start-up resync pass
    proc = psutil.Process(scene.controller.proc.pid)
    cpu, rss = [], []
    for _ in range(seconds):
        c0, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(1.0)
        c1, t1 = proc.cpu_times(), time.monotonic()
        cpu.append(100.0 * ((c1.user + c1.system) - (c0.user + c0.system)) / (t1 - t0))
        rss.append(proc.memory_info().rss / 2**20)
    results.add(f"scale.{count}.controller_idle_cpu", cpu, "%",
                note="1 s slices of a 10 s idle window (cpu_times ticks: 1 % resolution)")
    target = 80.0 if count == BURST else None
    results.add(f"scale.{count}.controller_rss", rss, "MB", target=target)
    kids = scene.controller.ssh_children()
    if kids:
        ssh_rss, ssh_pss = tree_memory([p.pid for p in kids])
        results.add(f"scale.{count}.ssh_children_rss_total", [ssh_rss], "MB", note=f"{len(kids)} children")
        results.add(f"scale.{count}.ssh_children_pss_total", [ssh_pss], "MB",
                    note="proportional set size: shared pages split between the children")
    results.add(f"scale.{count}.edge_rss", [psutil.Process(scene.edge.pid).memory_info().rss / 2**20], "MB")


def run(stack, results, deadline, burst_runs=3, before=None):
    runs, befores = [], []
    # The burst's floor: the same one `kubectl apply` of 100 Services with no controller watching them.
    floor = [kubectl_apply_alone(stack, f"floor{i}") for i in range(1, burst_runs + 1)]
    results.add("burst.100.floor.kubectl_apply", floor, "s",
                note="the burst's kubectl apply of 100 Services with no controller: what it cannot go under")
    with stack.edge("edge-scale") as edge:
        scene = new_scene(stack, edge, "burst1")
        idle(scene, results, 0)
        names = [f"b{i:03d}" for i in range(BURST)]
        runs.append(burst.annotate_all(scene, names))
        print(f"  burst 1: {runs[-1]['all_answer']:.2f}s", flush=True)
        idle(scene, results, BURST)
        if deadline.left() > 150:
            more = [f"m{i:03d}" for i in range(MORE)]
            grow = burst.annotate_all(scene, more, timeout=300)
            results.add("scale.add_200_more_all_answer", [grow["all_answer"]], "s",
                        note="200 more annotated in one apply, on top of 100 exposed")
            idle(scene, results, BURST + MORE)
        else:
            results.note(f"scale stopped at {BURST} Services: {deadline.left():.0f}s left of the budget")
        t0 = time.monotonic()
        scene.controller.stop()
        results.add(f"scale.{len(scene.dnsnames)}.controller_sigterm_stop", [time.monotonic() - t0], "s",
                    note="SIGTERM until the controller exited with all its ssh children stopped")
        for i in range(2, burst_runs + 1):
            if deadline.left() < 120:
                results.note(f"burst: {len(runs)} runs instead of {burst_runs} (time budget)")
                break
            scene = new_scene(stack, edge, f"burst{i}")
            runs.append(burst.annotate_all(scene, names))
            print(f"  burst {i}: {runs[-1]['all_answer']:.2f}s", flush=True)
            scene.controller.stop()
        for i in range(1, burst_runs + 1 if before else 1):
            if deadline.left() < 120:
                results.note(f"burst before: {len(befores)} runs instead of {burst_runs} (time budget)")
                break
            scene = new_scene(stack, edge, f"before{i}", root=before)
            befores.append(burst.annotate_all(scene, names))
            print(f"  burst before {i}: {befores[-1]['all_answer']:.2f}s", flush=True)
            scene.controller.stop()
    _report(results, runs)
    if befores:
        results.add("burst.100.before.all_answer", [r["all_answer"] for r in befores], "s",
                    note="the same burst by the code before (BENCH_BEFORE)")
        results.add("burst.100.before.ssh_children_pss_total", [r["ssh_pss_total"] for r in befores], "MB")


def _report(results, runs):
    def col(key):
        return [r[key] for r in runs if key in r]
    results.add("burst.100.all_answer", col("all_answer"), "s", target=15.0,
                note="one kubectl apply of 100 annotated Services until all answer")
    results.add("burst.100.part.kubectl_apply", col("kubectl_apply"), "s")
    results.add("burst.100.after_kubectl", [r["all_answer"] - r["kubectl_apply"] for r in runs], "s",
                note="from kubectl's exit until the last name answers: the controller's own share")
    results.add("burst.100.part.first_socket_created", col("first_socket_created"), "s")
    results.add("burst.100.part.last_socket_created", col("last_socket_created"), "s")
    results.add("burst.100.part.last_forward_up", col("last_forward_up"), "s")
    results.add("burst.100.per_service_reconcile", col("per_service_reconcile"), "s",
                note="spread of the edge's 'socket created' stamps / 99: the serial reconcile rate")
    results.add("burst.100.controller_cpu", col("controller_cpu"), "s", note="psutil cpu_times, process only")
    results.add("burst.100.edge_cpu", col("edge_cpu"), "s")
    results.add("burst.100.controller_peak_rss", col("controller_peak_rss"), "MB", note="sampled every 50 ms")
    results.add("burst.100.ssh_children_rss_total", col("ssh_rss_total"), "MB")
    results.add("burst.100.ssh_children_pss_total", col("ssh_pss_total"), "MB")
