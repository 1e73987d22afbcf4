"""The many-node edge's figures: what one change costs as the edge grows, and how fast it spreads.

    .venv/bin/python -m bench.edgechange [--sizes 10,1000,10000] [--before DIR]   # inside unshare --net

- **A change's cost**: the mean of 20 ``POST /connect`` (a socket and its
  tunnel) on an edge that already holds 10 / 1,000 / 10,000 sockets (each
  with a tunnel), and the data plane's resident memory once they are loaded.
  Measured for the edge before (``--before``: a checkout of main, its own
  ``edge/testing.py`` runs it; SQLite) and this one (SQLite, and PostgreSQL
  with fsync on), side by side in one run. The sockets are written into the
  store before the edge starts (10,000 API calls to the old edge would take
  half an hour), so both read the same rows.
- **Propagation**: from a ``POST /connect`` answered by node B to node C's
  data plane knowing the new name (its front answers ``no-tunnel`` instead of
  ``unknown-host``), three nodes on one PostgreSQL, 20 times.
- **Recovery**: 10 sockets with two tunnels each, every tunnel's client
  doing what a controller does (connect to ``tunnel_server``; when ssh exits,
  ask again and reconnect at once); the node holding the most tunnels is
  killed (SIGKILL) or frozen (SIGSTOP): seconds until every tunnel is
  connected again on a live node. (The controller's figure, every Service
  with connections on two live nodes, needs mysocketd's side of #26.)
- **The relay's cost**: requests through the node that holds the tunnel
  (direct) and through another node, which carries them over the link
  (relay), with ``wrk`` on keep-alive connections and with a new connection
  per request, 1 and 16 connections, 3 runs each, alternating; the relay's
  requests per second as a share of the direct ones.
"""

import argparse
import importlib.util
import http.client
import json
import re
import statistics
import subprocess
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from edge.auth import hash_password
from edge.clustertesting import EdgeCluster
from edge.pgtesting import PostgresServer
from edge.store.migrations import MIGRATIONS
from edge.testing import EdgeOptions, EdgeProcess, ssh_keygen

CREATES = 20
NO_LIMITS = {"sockets_per_account": 0, "tunnels_per_account": 0, "tunnel_creates_per_hour": 0,
             "registrations_per_hour_per_address": 0, "logins_per_minute_per_address": 0,
             "auth_failures_per_minute": 0}
EMAIL, PASSWORD = "bench@example.com", "bench-pw"


def _rows(n: int, pubkey: str, node: str = "") -> tuple:
    user_id = str(uuid.uuid4())
    user = (user_id, user_id.replace("-", ""), "bench", EMAIL, hash_password(PASSWORD), pubkey, 1.0)
    sockets, tunnels = [], []
    for i in range(n):
        sid = str(uuid.uuid4())
        sockets.append((sid, user_id, "s{}".format(i), "s{}-bench.edge.localhost".format(i), "http",
                        None, False, "", "", False, "[]", "[]", 2.0 + i))
        tunnels.append((str(uuid.uuid4()), sid, 10000 + i, 3.0, "", node))
    return user, sockets, tunnels


def populate_sqlite(path: Path, n: int, pubkey: str) -> None:
    """The single-node edge's schema as main has it (migration 1), with n sockets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    user, sockets, tunnels = _rows(n, pubkey)
    db = sqlite3.connect(str(path))
    db.executescript(MIGRATIONS[0].sqlite)
    db.execute("INSERT INTO users VALUES (?,?,?,?,?,?,?)", user)
    db.executemany("INSERT INTO sockets VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   [s[:6] + (int(s[6]), s[7], s[8], int(s[9])) + s[10:] for s in sockets])
    db.executemany("INSERT INTO tunnels VALUES (?,?,?,?,?)", [t[:5] for t in tunnels])
    db.execute("INSERT INTO meta VALUES ('next_local_port', ?)", (str(10000 + n),))
    db.commit()
    db.close()


def populate_postgres(url: str, n: int, pubkey: str, node: str) -> None:
    import psycopg
    user, sockets, tunnels = _rows(n, pubkey, node)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO users VALUES (%s,%s,%s,%s,%s,%s,%s)", user)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO sockets VALUES ({})".format(",".join(["%s"] * 13)), sockets)
            cur.executemany("INSERT INTO tunnels (tunnel_id, socket_id, local_port, created, owner, node) "
                            "VALUES (%s,%s,%s,%s,%s,%s)", tunnels)
        conn.execute("INSERT INTO meta VALUES ('next_local_port', %s) ON CONFLICT (key) DO UPDATE "
                     "SET value = excluded.value", (str(10000 + n),))


def measure_creates(edge) -> dict:
    """Mean and median ms of CREATES POST /connect, and the data plane's RSS (MB)."""
    token = edge.login(EMAIL, PASSWORD)
    times = []
    for i in range(CREATES):
        t0 = time.perf_counter()
        resp = edge.api("POST", "/connect", {"name": "new{}".format(i)}, token=token, timeout=60)
        times.append(1000 * (time.perf_counter() - t0))
        if resp.status != 200:
            raise RuntimeError("POST /connect: {} {}".format(resp.status, resp.body))
    rss = sum(psutil.Process(pid).memory_info().rss for pid in edge.child_pids()) / 2**20
    return {"mean_ms": statistics.mean(times), "median_ms": statistics.median(times), "plane_rss_mb": rss}


def _old_edge_class(before: Path):
    spec = importlib.util.spec_from_file_location("edge_before_testing", before / "edge" / "testing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.EdgeProcess


def cost(work: Path, n: int, kind: str, before=None) -> dict:
    pubkey = ssh_keygen(work / "key-{}-{}".format(kind, n))
    opts = dict(limits=NO_LIMITS, log_level="WARNING", ready_timeout=300)
    if kind == "before":
        edge = _old_edge_class(before)(work / "before-{}".format(n), **opts)
        populate_sqlite(edge.data_dir / "edge.sqlite3", n, pubkey)
        with edge:
            return measure_creates(edge)
    if kind == "sqlite":
        edge = EdgeProcess(work / "sqlite-{}".format(n), EdgeOptions(**opts))
        populate_sqlite(edge.data_dir / "edge.sqlite3", n, pubkey)
        with edge:
            return measure_creates(edge)
    with PostgresServer(durable=True) as pg:
        url = pg.new_database("bench")
        secret = work / "secret-{}".format(n)
        secret.write_text("a cluster secret for the bench")
        edge = EdgeProcess(work / "pg-{}".format(n), EdgeOptions(
            **opts, extra_args=("--store", url, "--node-name", "node1",
                                "--cluster-secret-file", str(secret), "--link-port", "0")))
        with edge:                    # migrate, then fill the tables it made
            pass
        populate_postgres(url, n, pubkey, "node1")
        with edge:
            return measure_creates(edge)


def _front_knows(node, dnsname: str) -> bool:
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": dnsname})
        resp = conn.getresponse()
        resp.read()
        return resp.getheader("Mysocket-Edge") == "no-tunnel"
    finally:
        conn.close()


def propagation(work: Path) -> list:
    """ms from B's answer to C's data plane knowing the name, 20 times."""
    out = []
    with PostgresServer(durable=True) as pg, EdgeCluster(work / "spread", pg.new_database("spread")) as cl:
        cl.wait_live(3)
        a, b, c = cl.nodes
        a.register(EMAIL, PASSWORD, ssh_keygen(work / "key-spread"))
        token = b.login(EMAIL, PASSWORD)
        for i in range(CREATES):
            sock = b.api("POST", "/connect", {"name": "p{}".format(i)}, token=token).body
            t0 = time.perf_counter()
            deadline = time.monotonic() + 10
            while not _front_knows(c, sock["dnsname"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the change never reached node C")
                time.sleep(0.001)
            out.append(1000 * (time.perf_counter() - t0))
    return out


def _wrk(host: str, port: int, dnsname: str, seconds: int, conns: int, close: bool) -> float:
    argv = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", "{}s".format(seconds),
            "-H", "Host: " + dnsname, "http://{}:{}/".format(host, port)]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else float("nan")


def relay(work: Path, results, seconds: int = 3, runs: int = 3) -> dict:
    """Requests per second direct (the tunnel's node) and relayed (another node), and the share."""
    from bench.sidebyside import Procs, start_nginx     # the same nginx the side-by-side uses
    (work / "relay-nginx").mkdir(parents=True, exist_ok=True)
    procs = Procs(work / "relay-nginx")
    backend_port = start_nginx(procs, work / "relay-nginx")
    table = {}
    try:
        with PostgresServer() as pg, EdgeCluster(work / "relay", pg.new_database("relay")) as cl:
            cl.wait_live(3)
            a = cl.nodes[0]
            key = work / "key-relay"
            user = a.register(EMAIL, PASSWORD, ssh_keygen(key))
            token = a.login(EMAIL, PASSWORD)
            sock = a.api("POST", "/connect", {"name": "relay"}, token=token).body
            tunnel = sock["tunnels"][0]
            home = cl.by_host(tunnel["tunnel_server"])
            other = next(n for n in cl.nodes if n is not home)
            procs.start("relay-ssh", home.ssh_argv(key, user["user_name"], options=[
                "-N", "-R", "{}:127.0.0.1:{}".format(tunnel["local_port"], backend_port)]))
            home.wait_forward(tunnel["local_port"])
            for close in (False, True):
                for conns in (1, 16):
                    row = "{} {}".format("new connection" if close else "keep-alive", conns)
                    got = {"direct": [], "relay": []}
                    for i in range(runs):
                        order = [("direct", home), ("relay", other)]
                        for name, node in order if i % 2 == 0 else order[::-1]:
                            got[name].append(_wrk(node.host, node.http_port, sock["dnsname"],
                                                  seconds, conns, close))
                    share = statistics.median(got["relay"]) / statistics.median(got["direct"])
                    table[row] = (statistics.median(got["direct"]), statistics.median(got["relay"]), share)
                    key_name = "edgechange.relay.{}.c{}".format("newconn" if close else "keepalive", conns)
                    results.add(key_name + ".direct_rps", got["direct"], "req/s")
                    results.add(key_name + ".relay_rps", got["relay"], "req/s")
                    results.add(key_name + ".relay_share", [share], "x",
                                note="relayed req/s as a share of direct (medians of {} runs of {} s)"
                                .format(runs, seconds))
                    print("{:>18}: direct {:.0f} req/s, relayed {:.0f} req/s ({:.2f}x)".format(
                        row, *table[row]), flush=True)
    finally:
        procs.stop()
    return table


def recovery(work: Path, results, how: str, sockets: int = 10) -> float:
    """Seconds from a node's loss to every tunnel connected again on a live node."""
    import os
    import signal
    from edge.clustertesting import TunnelFollower
    from edge.testclients import Account, SshClients
    from bench.sidebyside import Procs, start_nginx
    (work / how).mkdir(parents=True, exist_ok=True)
    procs = Procs(work / how)
    backend_port = start_nginx(procs, work / how)
    ssh = SshClients(work / how)
    followers = []
    try:
        with PostgresServer() as pg, EdgeCluster(work / how / "cluster", pg.new_database("recovery")) as cl:
            cl.wait_live(3)
            a = cl.nodes[0]
            key = work / how / "key"
            pub = ssh_keygen(key)
            user = a.register(EMAIL, PASSWORD, pub)
            acct = Account(EMAIL, PASSWORD, key, pub, user, a.login(EMAIL, PASSWORD))
            for i in range(sockets):
                sock = a.api("POST", "/socket", {"name": "r{}".format(i)}, token=acct.token).body
                for _ in range(2):
                    t = a.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {}, token=acct.token).body
                    followers.append(TunnelFollower(cl, acct, sock, t, backend_port, ssh).start())

            def connected(nodes) -> set:
                return {t["local_port"] for n in nodes for t in n.tunnels()}

            deadline = time.monotonic() + 60
            while {f.port for f in followers} - connected(cl.nodes) and time.monotonic() < deadline:
                time.sleep(0.05)
            counts = {}
            for f in followers:
                counts[f.server] = counts.get(f.server, 0) + 1
            victim = cl.by_host(max(counts, key=counts.get))
            alive = [n for n in cl.nodes if n is not victim]
            pids = [victim.pid, *victim.child_pids()]
            t0 = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
            deadline = t0 + 120
            while {f.port for f in followers} - connected(alive):
                if time.monotonic() > deadline:
                    raise RuntimeError("tunnels not back within 120 s")
                time.sleep(0.05)
            took = time.monotonic() - t0
            for f in followers:
                f.stop()
            if how == "frozen":
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
    finally:
        for f in followers:
            f.stop()
        ssh.stop_all()
        procs.stop()
    results.add("edgechange.recovery.{}".format(how), [took], "s",
                note="{} tunnels ({} on the lost node) connected again on live nodes".format(
                    len(followers), counts[victim.host]))
    print("recovery ({}): {:.1f} s until all {} tunnels ({} on the lost node) were connected on "
          "live nodes".format(how, took, len(followers), counts[victim.host]), flush=True)
    return took


def run(results, sizes=(10, 1000, 10000), before=None, workdir=None) -> dict:
    work = Path(workdir or tempfile.mkdtemp(prefix="edgechange-"))
    kinds = (["before"] if before else []) + ["sqlite", "postgres"]
    table = {}
    for n in sizes:
        for kind in kinds:
            f = cost(work, n, kind, Path(before) if before else None)
            table[(kind, n)] = f
            results.add("edgechange.{}.{}.post_connect".format(kind, n), [f["mean_ms"]], "ms",
                        note="mean of {} POST /connect; median {:.1f}".format(CREATES, f["median_ms"]))
            results.add("edgechange.{}.{}.plane_rss".format(kind, n), [f["plane_rss_mb"]], "MB")
            print("{:>8} {:>6} sockets: POST /connect mean {:.1f} ms (median {:.1f}), data plane {:.0f} MB"
                  .format(kind, n, f["mean_ms"], f["median_ms"], f["plane_rss_mb"]), flush=True)
    spread = propagation(work)
    results.add("edgechange.propagation_b_to_c", spread, "ms",
                note="POST /connect answered by node B -> node C's front knows the name")
    print("propagation B -> C: median {:.1f} ms, worst {:.1f} ms".format(
        statistics.median(spread), max(spread)), flush=True)
    relay(work, results)
    for how in ("killed", "frozen"):
        recovery(work, results, how)
    return table


def main(argv=None):
    from bench.stats import Results
    p = argparse.ArgumentParser(prog="python -m bench.edgechange", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,1000,10000")
    p.add_argument("--only-relay", action="store_true", help="only the relay's cost")
    p.add_argument("--only-recovery", action="store_true", help="only the recovery times")
    p.add_argument("--before", default="", help="a checkout of main to measure too "
                   "(e.g. `git archive main | tar -x -C /tmp/before`)")
    a = p.parse_args(argv)
    results = Results()
    if a.only_relay:
        relay(Path(tempfile.mkdtemp(prefix="edgechange-")), results)
        return 0
    if a.only_recovery:
        for how in ("killed", "frozen"):
            recovery(Path(tempfile.mkdtemp(prefix="edgechange-")), results, how)
        return 0
    run(results, [int(x) for x in a.sizes.split(",")], a.before or None)
    print(json.dumps({k: v for k, v in results.figures.items()}, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
