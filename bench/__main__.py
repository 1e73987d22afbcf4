"""`make bench`: how fast, how big, how close to the OpenSSH floor.

    make bench                                  # everything, about 20 minutes
    .venv/bin/python -m bench --only expose     # inside `unshare --net` (see the Makefile)

Runs the figure groups in order under one global time budget (--deadline):
each group shrinks its run count when the budget runs short and says so in
the notes, and a watchdog interrupts the run if it overruns anyway, so the
benchmark always stops by itself. Whatever was measured is printed as a table
and written to bench/results/latest.json (one key per figure: median, p95,
worst, unit, n; plus the machine and the notes), even when a group failed.
Every process started is stopped on the way out (and `make bench` runs in a
PID namespace, so none can outlive it).
"""

import _thread
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from bench import (dataplane, edgechange, expose, globalctl, grpcrate, large, multiplex, recovery, routes, scale,
                   sidebyside)
from bench.stack import BenchStack, Deadline
from bench.stats import Results, machine

GROUPS = ("expose", "recovery", "scale", "large", "dataplane", "multiplex", "routes", "sidebyside", "grpc",
          "edgechange", "global")
OUT = Path(__file__).resolve().parent / "results" / "latest.json"
GRACE = 90      # seconds past the budget before the watchdog interrupts a group that overran


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deadline", type=float, default=float(os.environ.get("BENCH_DEADLINE", 1500)),
                   help="global time budget in seconds [env BENCH_DEADLINE; default 1500]")
    p.add_argument("--runs", type=int, default=20, help="runs of the floor/expose/ssh-kill figures")
    p.add_argument("--only", action="append", choices=GROUPS, help="run only these groups (repeatable)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    p.add_argument("--before", default=os.environ.get("BENCH_BEFORE", ""),
                   help="a git ref (e.g. main) whose controller is measured beside this one in the expose, burst "
                        "and large groups [env BENCH_BEFORE; default: none]")
    args = p.parse_args(argv)
    groups = args.only or list(GROUPS)
    if "recovery" in groups and "expose" not in groups:
        groups.insert(0, "expose")          # recovery acts on the Services expose leaves exposed

    results = Results()
    info = machine()
    deadline = Deadline(args.deadline)
    workdir = Path(tempfile.mkdtemp(prefix="mysocketd-bench-"))
    watchdog = threading.Timer(args.deadline + GRACE, _thread.interrupt_main)
    watchdog.daemon = True
    watchdog.start()
    print(f"mysocketd bench: {info['cores']} cores, load {info['loadavg_at_start']}, "
          f"{info['cpu_busy_percent_before_start']}% busy, budget {args.deadline:.0f}s, work dir {workdir}", flush=True)
    if info["cpu_busy_percent_before_start"] > 25:
        results.note(f"the machine was {info['cpu_busy_percent_before_start']}% busy before the start: "
                     "figures include other work's interference")
    failed = []
    try:
        before = _checkout(args.before, workdir / "before") if args.before else None
        with BenchStack(workdir) as stack:
            print(f"control plane up after {deadline.elapsed():.1f}s", flush=True)
            _run_groups(stack, groups, results, deadline, args.runs, failed, before)
    except KeyboardInterrupt:
        failed.append("interrupted (watchdog or Ctrl-C)")
        results.note("interrupted: the figures above are all that was measured")
    finally:
        watchdog.cancel()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_at_end"] = os.getloadavg()
    command = " ".join(["python -m bench", *(argv or sys.argv[1:])])
    results.write(args.out, machine=info, code=_code_state(), command=command,
                  duration_s=round(deadline.elapsed(), 1), budget_s=args.deadline, failed=failed)
    print("\n" + results.table())
    for n in results.notes:
        print(f"note: {n}")
    print(f"\n{len(results.figures)} figures in {deadline.elapsed():.0f}s -> {args.out}"
          + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


def _code_state():
    """Which code was measured: the commit and the files changed since (read-only git calls)."""
    def git(*args):
        try:
            r = subprocess.run(["git", *args], cwd=str(OUT.parents[2]), capture_output=True, text=True, timeout=10)
            return r.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    changed = git("status", "--porcelain", "--", "mysocketd.py", "lib", "edge").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": [line.split(maxsplit=1)[-1] for line in changed]}


def _checkout(ref, where):
    """mysocketd.py and lib/ as they are at `ref` (read-only git), for the "before" controller."""
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "mysocketd.py", "lib"], cwd=str(OUT.parents[2]),
                             capture_output=True, check=True, timeout=60)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True, timeout=60)
    commit = subprocess.run(["git", "rev-parse", ref], cwd=str(OUT.parents[2]), capture_output=True, text=True,
                            timeout=10).stdout.strip()
    print(f"before: {ref} ({commit[:12]}) in {where}", flush=True)
    return where


def _run_groups(stack, groups, results, deadline, runs, failed, before=None):
    scene = None

    def step(name, fn, needs):
        print(f"\n== {name} ({deadline.left():.0f}s of budget left)", flush=True)
        if deadline.left() < needs:
            results.note(f"{name} skipped: it needs about {needs}s, {deadline.left():.0f}s of the budget left")
            return
        started = time.monotonic()
        try:
            fn()
        except Exception:
            failed.append(name)
            traceback.print_exc()
            results.note(f"{name} failed: {traceback.format_exc().strip().splitlines()[-1]}")
        print(f"   {name} took {time.monotonic() - started:.1f}s", flush=True)

    if "expose" in groups:
        with stack.edge("edge-expose") as edge:
            def do_expose():
                nonlocal scene
                scene = expose.setup(stack, edge, runs)
                old = expose.setup(stack, edge, runs, "before", root=before) if before else None
                expose.run(scene, results, runs, before=old)
                if old is not None:
                    old.controller.stop()
            step("floor + expose", do_expose, 20)
            if "recovery" in groups and scene is not None and len(scene.dnsnames) == runs:
                restarts = 3 if deadline.left() > 240 else 1
                step("recovery", lambda: recovery.run(scene, results, runs, restarts), 40)
            if scene is not None:
                scene.controller.stop()
    if "scale" in groups:
        step("burst + scale", lambda: scale.run(stack, results, deadline, before=before), 60)
    if "large" in groups:
        step("large: 100 / 1,000 of 10,000 Services, two replicas",
             lambda: large.run(stack, results, deadline, before=before), 300)
    if "dataplane" in groups:
        step("data plane", lambda: dataplane.run(stack, results, deadline), 30)
    if "multiplex" in groups:
        step("multiplexing", lambda: multiplex.run(stack, results, deadline), 20)
    if "routes" in groups:
        step("route edits", lambda: routes.run(stack, results, deadline), 60)
    if "sidebyside" in groups:
        # 3 runs of 10 s per cell, as issue 11 measured; 3 s runs when the budget is short.
        seconds = 10 if deadline.left() > 1000 else 3
        step("side by side: edge, C floor, peer",
             lambda: sidebyside.run(results, seconds=seconds, before=os.environ.get("BENCH_EDGE_BEFORE")), 150)
    if "grpc" in groups:
        # gRPC through the edge vs direct (#23): about 30 s.
        step("gRPC: unary and streaming, edge vs direct",
             lambda: grpcrate.run(results, workdir=stack.workdir / "grpc"), 40)
    if "edgechange" in groups:
        # A change's cost at 10 / 1,000 / 10,000 sockets, before (BENCH_EDGE_BEFORE) and after.
        step("many nodes: a change's cost, propagation",
             lambda: edgechange.run(results, before=os.environ.get("BENCH_EDGE_BEFORE"),
                                    workdir=stack.workdir / "edgechange"), 120)
    if "global" in groups:
        step("many nodes: mysocketd after a node's death", lambda: globalctl.run(stack, results), 60)


if __name__ == "__main__":
    sys.exit(main())
