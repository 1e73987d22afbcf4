"""Benchmark: the HTTP front plus an SSH tunnel, side by side with the backend hit directly.

    .venv/bin/python -m edge.bench_front [--seconds 2] [--concurrency 8] [--no-wrk]

Starts a throw-away edge (edge.testing.EdgeProcess, ports 0), one account, one
http socket and one real ``ssh -N -R`` tunnel to a small HTTP/1.0 backend that
runs in its OWN process (so the load generator does not share a GIL with it).
Then, for the same duration, with 1 client (added latency) and with
--concurrency clients (throughput), it measures:

  direct  client -> backend
  front   client -> edge HTTP front -> SSH channel -> ssh client -> backend

with a pool of Python threads that open a NEW connection per request (no
keep-alive: every request costs the front a new SSH channel, its worst case),
and again with ``wrk`` when it is installed (it reconnects after each HTTP/1.0
response, so also one channel per request). It prints requests/second and
latency percentiles for both, and the latency the front adds. Everything
(edge, ssh, backend) runs on this machine and competes for its cores, so the
numbers compare the two paths; they are not capacity figures for a server.
"""

import argparse
import http.client
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .testing import EdgeProcess, HttpBackend, ssh_keygen


def serve_backend() -> None:
    """Child mode: run an HttpBackend and print its port until killed."""
    with HttpBackend("bench") as backend:
        print(backend.port, flush=True)
        threading.Event().wait()


def start_backend_process() -> tuple:
    proc = subprocess.Popen([sys.executable, "-m", "edge.bench_front", "--serve-backend"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return proc, int(proc.stdout.readline())


def python_load(port: int, host_header: str, seconds: float, concurrency: int) -> dict:
    latencies, errors = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker():
        mine, failed = [], 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/", headers={"Host": host_header})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    failed += 1
                    continue
            except OSError:
                failed += 1
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"rps": len(latencies) / seconds, "p50": q[49] * 1000, "p90": q[89] * 1000,
            "p99": q[98] * 1000, "errors": errors[0], "n": len(latencies)}


def wrk_load(port: int, host_header: str, seconds: float, concurrency: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", str(min(2, concurrency)), "-c", str(concurrency), "-d", "{}s".format(int(seconds)),
         "--latency", "-H", "Host: " + host_header, "http://127.0.0.1:{}/".format(port)],
        capture_output=True, text=True, timeout=seconds + 30).stdout

    def ms(label):
        m = re.search(r"^\s*{}\s+([\d.]+)(us|ms|s)\b".format(label), out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(rps.group(1)) if rps else float("nan"), "p50": ms("50%"),
            "p90": ms("90%"), "p99": ms("99%"),
            "errors": int(errors.group(1)) if errors else 0,
            "note": socket_errors.group(1) if socket_errors else ""}


def report(title: str, direct: dict, front: dict) -> None:
    print("\n[{}]".format(title))
    print("  {:<7}{:>10}{:>10}{:>10}{:>10}{:>8}".format(
        "path", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors"))
    for name, r in (("direct", direct), ("front", front)):
        print("  {:<7}{:>10.0f}{:>10.2f}{:>10.2f}{:>10.2f}{:>8}".format(
            name, r["rps"], r["p50"], r["p90"], r["p99"], r["errors"]))
        if r.get("note"):
            print("         wrk socket errors: " + r["note"])
    print("  front adds {:.2f} ms at p50, {:.2f} ms at p90; throughput {:.0%} of direct".format(
        front["p50"] - direct["p50"], front["p90"] - direct["p90"],
        front["rps"] / direct["rps"] if direct["rps"] else 0))


def run(seconds: float, concurrency: int, use_wrk: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-front-") as tmp:
        tmp = Path(tmp)
        backend, port = start_backend_process()
        ssh = None
        try:
            with EdgeProcess(tmp / "edge", admin=True, log_level="WARNING") as edge:
                pub = ssh_keygen(tmp / "id_ed25519")
                user = edge.register("bench@example.com", "bench-password", pub)
                token = edge.login("bench@example.com", "bench-password")
                sock = edge.api("POST", "/connect", {"name": "bench"}, token=token).body
                local_port = sock["tunnels"][0]["local_port"]
                ssh = subprocess.Popen(edge.ssh_argv(
                    tmp / "id_ed25519", user["user_name"],
                    options=["-N", "-R", "{}:127.0.0.1:{}".format(local_port, port)]),
                    stdin=subprocess.DEVNULL)
                edge.wait_forward(local_port)
                print("edge front 127.0.0.1:{} -> ssh tunnel {} -> backend 127.0.0.1:{}; "
                      "{} s per run, new connection per request"
                      .format(edge.http_port, local_port, port, seconds))
                runs = [("python threads", python_load)]
                if use_wrk and shutil.which("wrk"):
                    runs.append(("wrk", wrk_load))
                for tool, load in runs:
                    for clients in sorted({1, concurrency}):
                        direct = load(port, "backend", seconds, clients)
                        front = load(edge.http_port, sock["dnsname"], seconds, clients)
                        report("{}, {} concurrent client(s)".format(tool, clients),
                               direct, front)
                ssh.terminate()
                ssh.wait(10)
        finally:
            for proc in (ssh, backend):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.bench_front", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each run")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk runs")
    p.add_argument("--serve-backend", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_backend:
        serve_backend()
        return 0
    run(args.seconds, args.concurrency, not args.no_wrk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
