"""Figure 6: requests per second and latency through edge + tunnel, beside the backend hit directly.

Reuses edge/bench_front.py (its backend runs in its own process, its load
generators are `wrk` when installed -- it is, from apt, on the bench machine;
CI does not run the bench so .ci/run does not install it -- else a pool of
Python threads), but the tunnel is made with the controller's own ssh argv
(lib.sshargs), so it is the data path a Service really gets. Each setting
runs 3 times for 2 s, direct and front alternating, with a new connection
per request (HTTP/1.0): every request costs the front a new SSH channel, its
worst case. Everything shares this machine's cores, so the figures compare
the two paths; they are not capacity figures for a server. The CPU each
process (edge, ssh client, backend) spent per request says where the
front's time goes.
"""

import shutil

from bench.stack import cpu_seconds, spawn, ssh_settings, stop
from edge.bench_front import python_load, start_backend_process, wrk_load
from lib import sshargs

SECONDS = 2
RUNS = 3


def run(stack, results, deadline, clients=(1, 8)):
    load, tool = (wrk_load, "wrk") if shutil.which("wrk") else (python_load, "python threads")
    backend, port = start_backend_process()
    ssh = None
    try:
        with stack.edge("edge-dataplane") as edge:
            account = stack.account(edge, "acct-dataplane")
            sock = edge.api("POST", "/connect", {"name": "dataplane"}, token=account.token).body
            local_port = int(sock["tunnels"][0]["local_port"])
            spec = sshargs.TunnelSpec(local_port, "127.0.0.1", port, account.user["user_name"])
            ssh = spawn(sshargs.ssh_argv(spec, ssh_settings(edge, account), foreground=True),
                        stack.workdir / "dataplane-ssh.log")
            edge.wait_forward(local_port)
            results.note(f"data plane measured with {tool}, {SECONDS} s per run, new connection per request")
            for n in clients:
                runs = {"direct": [], "front": []}
                for i in range(RUNS):
                    order = (("direct", port, "backend"), ("front", edge.http_port, sock["dnsname"]))
                    for path, target, host in order if i % 2 == 0 else order[::-1]:
                        cpu0 = {pid: cpu_seconds(pid) for pid in (edge.pid, ssh.pid, backend.pid)}
                        r = load(target, host, SECONDS, n)
                        requests = max(1.0, r["rps"] * SECONDS)
                        for who, pid in (("edge", edge.pid), ("ssh", ssh.pid), ("backend", backend.pid)):
                            r[f"{who}_cpu_ms"] = 1000 * (cpu_seconds(pid) - cpu0[pid]) / requests
                        runs[path].append(r)
                _report(results, n, runs)
    finally:
        stop([p for p in (ssh, backend) if p is not None])


def _report(results, clients, runs):
    for path, rs in runs.items():
        errors = sum(r["errors"] for r in rs)
        note = f"{errors} non-2xx answers" if errors else ""
        results.add(f"dataplane.c{clients}.{path}.rps", [r["rps"] for r in rs], "req/s", note=note)
        results.add(f"dataplane.c{clients}.{path}.latency_p50", [r["p50"] for r in rs], "ms")
        results.add(f"dataplane.c{clients}.{path}.latency_p99", [r["p99"] for r in rs], "ms")
    for who in ("edge", "ssh", "backend"):
        results.add(f"dataplane.c{clients}.front.{who}_cpu_per_request", [r[f"{who}_cpu_ms"] for r in runs["front"]],
                    "ms", note=f"CPU of the {who} process per request through the front")
    results.add(f"dataplane.c{clients}.direct.backend_cpu_per_request",
                [r["backend_cpu_ms"] for r in runs["direct"]], "ms")
    added = [f["p50"] - d["p50"] for d, f in zip(runs["direct"], runs["front"])]
    results.add(f"dataplane.c{clients}.front_adds_p50", added, "ms", note="front p50 - direct p50, per run pair")
    share = [f["rps"] / d["rps"] for d, f in zip(runs["direct"], runs["front"]) if d["rps"]]
    results.add(f"dataplane.c{clients}.front_share_of_direct_rps", share, "x")
