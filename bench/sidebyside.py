"""The data plane side by side with the C floor and a peer, in one run (issue 11).

    .venv/bin/python -m bench.sidebyside [--seconds 10] [--runs 3] [--only edge,floor]
    (inside `unshare --net`; `make bench` runs it as the group "sidebyside")

Every system serves the same nginx backend through the same OpenSSH client
(`ssh -R`), routed by Host, and is loaded with the same `wrk` settings:

  edge   this repository's edge (python -m edge), its HTTP and HTTPS fronts
  floor  Debian's OpenSSH sshd holding the forward, Debian's HAProxy in front
         routing by Host (and terminating TLS for the https rows): proven C parts
  peer   the same sshd with Caddy (Go, built from the Go module proxy into
         .cache/peer/ by bench/build_peer.sh, not committed) routing by Host
         instead of HAProxy; sish, the SSH tunnel server in Go, is not on
         the module proxy (403), so Caddy is the Go peer

Rows: keep-alive at 1 and 16 connections, a new connection per request
(`Connection: close`) at 1 and 16, and bulk (one 64 MiB file at a time, MB/s);
each plain and over TLS; and HTTP/2 over TLS (h2load, nghttp2-client: 1 and 16
connections x 10 concurrent streams; HAProxy's `alpn h2,http/1.1` on the floor),
whose latency is h2load's mean per request (it gives no percentiles). Each cell is the median of --runs wrk runs of
--seconds. The figures go to bench/results (via bench.stats) and a table with
the ratio to the floor is printed. All of it shares this machine's cores
with the load generator, so ratios are what matter, not absolute numbers.

Why the floor's ssh runs with `-tt` and a command: stock sshd sets TCP_NODELAY
only for interactive sessions, so with `-N` every new channel waits for a
delayed ACK (~40 ms) and the floor would look far worse than it is.
"""

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stack import stop
from edge.testing import EdgeProcess, ssh_keygen

ROOT = Path(__file__).resolve().parent.parent
ROWS = (("ka_c1", 1, True), ("ka_c16", 16, True), ("close_c1", 1, False),
        ("close_c16", 16, False))
H2_ROWS = (("h2_c1", 1), ("h2_c16", 16))      # HTTP/2 over TLS: connections x H2_STREAMS streams
H2_STREAMS = 10
BULK_BYTES = 64 * 1024 * 1024
HOST = "bench.edge.localhost"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listens on port {}".format(port))


class Procs:
    """Every process started here, stopped (SIGTERM, then SIGKILL) by PID on exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, **kw):
        log = open(self.workdir / (name + ".log"), "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **kw)
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self):
        stop(self.procs, timeout=5)
        self.procs = []


def self_signed(workdir, name="*.edge.localhost"):
    """(cert path, key path, pem with both) of a throwaway certificate for the floor."""
    key, crt = workdir / "floor.key", workdir / "floor.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name,
                    "-keyout", str(key), "-out", str(crt)], check=True,
                   capture_output=True, timeout=30)
    pem = workdir / "floor.pem"
    pem.write_bytes(crt.read_bytes() + key.read_bytes())
    return crt, key, pem


def start_nginx(procs, workdir):
    port = free_port()
    root = workdir / "www"
    root.mkdir()
    (root / "index.html").write_text("hello from nginx\n")
    with open(root / "bulk", "wb") as f:
        f.truncate(BULK_BYTES)
    conf = workdir / "nginx.conf"
    conf.write_text("""
worker_processes 1; daemon off; pid {w}/nginx.pid; error_log stderr warn; user root;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; keepalive_requests 1000000;
  client_body_temp_path {w}/tmp; proxy_temp_path {w}/tmp; fastcgi_temp_path {w}/tmp;
  uwsgi_temp_path {w}/tmp; scgi_temp_path {w}/tmp;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""".format(w=workdir, port=port, root=root))
    procs.start("nginx", ["nginx", "-p", str(workdir), "-c", str(conf), "-e", "stderr"])
    wait_port(port)
    return port


def wrk(url, host, connections, seconds, keepalive, path="/index.html"):
    """One wrk run. wrk resolves the URL's name (so TLS carries it as SNI) in a
    mount namespace of its own whose /etc/hosts maps it to 127.0.0.1."""
    hosts = Path(tempfile.mkdtemp(prefix="wrk-hosts-")) / "hosts"
    hosts.write_text("127.0.0.1 localhost {}\n".format(host))
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
            "wrk", "-t", "1" if connections == 1 else "2", "-c", str(connections),
            "-d", "{}s".format(seconds), "--latency", "-H", "Host: " + host]
    if not keepalive:
        argv += ["-H", "Connection: close"]
    out = subprocess.run(argv + [url + path], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mult = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024 ** 2 / 1e6, "GB": 1024 ** 3 / 1e6}
    mbps = float(m.group(1)) * mult.get(m.group(2), 1)
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "mbps": mbps, "p99": p99,
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def h2load(url, connections, seconds):
    """One h2load run over TLS (ALPN h2), every connection with H2_STREAMS streams at once. It
    connects to 127.0.0.1 itself (--connect-to) and sends the URL's name as SNI and :authority."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    argv = ["h2load", "-D", str(seconds), "-c", str(connections), "-m", str(H2_STREAMS),
            "-t", "1" if connections == 1 else "2", "--connect-to", "127.0.0.1:" + port,
            "-H", ":authority: " + host, url + "/index.html"]      # the name alone, as wrk's Host
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    if "Application protocol: h2" not in out:
        raise RuntimeError("h2load did not get HTTP/2: " + out[-500:])
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    mean = _ms(re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1))
    done, ok = (int(x) for x in re.search(r"requests: .*?(\d+) done, (\d+) succeeded", out).groups())
    return {"rps": rps, "mbps": 0.0, "p99": mean, "errors": done - ok, "socket_errors": ""}


def _ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    unit = {"\u00b5s": "us"}.get(unit, unit)       # h2load writes microseconds with a micro sign
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


@contextlib.contextmanager
def edge_system(workdir, backend_port, procs):
    """This repository's edge, one account, one http socket, one `ssh -N -R`."""
    with EdgeProcess(workdir / "edge", admin=True, log_level="WARNING",
                     extra_args=_edge_extra_args()) as edge:
        pub = ssh_keygen(workdir / "edge_key")
        user = edge.register("bench@example.com", "bench-pw", pub)
        token = edge.login("bench@example.com", "bench-pw")
        sock = edge.api("POST", "/connect", {"name": "bench"}, token=token).body
        port = sock["tunnels"][0]["local_port"]
        procs.start("edge-ssh", edge.ssh_argv(workdir / "edge_key", user["user_name"], options=[
            "-N", "-R", "{}:127.0.0.1:{}".format(port, backend_port)]))
        edge.wait_forward(port)
        https = getattr(edge, "https_port", None)
        yield {"http": edge.http_port, "https": https, "host": sock["dnsname"],
               "pids": [edge.pid] + list(getattr(edge, "child_pids", lambda: [])())}


def _edge_extra_args():
    # One load generator is one visitor (127.0.0.1); the HTTP/2 rows hold 16 x 10 streams at
    # once, more than a visitor's default share (--visitor-share) of the account, which would
    # measure 429s instead of the data plane.
    return ("--visitor-share", "1")


BEFORE = {"dir": None}   # set by --before: a checkout of an older edge to compare with


@contextlib.contextmanager
def before_system(workdir, backend_port, procs):
    """An older edge (its own checkout's edge/testing.py runs it), plain HTTP only."""
    import importlib.util
    path = Path(BEFORE["dir"]) / "edge" / "testing.py"
    spec = importlib.util.spec_from_file_location("edge_before_testing", path)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    with old.EdgeProcess(workdir / "before", admin=True, log_level="WARNING") as edge:
        pub = ssh_keygen(workdir / "before_key")
        user = edge.register("bench@example.com", "bench-pw", pub)
        token = edge.login("bench@example.com", "bench-pw")
        sock = edge.api("POST", "/connect", {"name": "bench"}, token=token).body
        port = sock["tunnels"][0]["local_port"]
        procs.start("before-ssh", edge.ssh_argv(workdir / "before_key", user["user_name"],
                                                options=["-N", "-R", "{}:127.0.0.1:{}".format(
                                                    port, backend_port)]))
        edge.wait_forward(port)
        yield {"http": edge.http_port, "https": None, "host": sock["dnsname"],
               "pids": [edge.pid]}


def start_sshd_forward(workdir, backend_port, procs, name):
    """sshd holding one `ssh -R` forward to the backend; the forwarded port."""
    fdir = workdir / name
    fdir.mkdir()
    Path("/run/sshd").mkdir(exist_ok=True)   # sshd's privilege-separation directory
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fdir / "host")],
                   check=True, timeout=30)
    pub = ssh_keygen(fdir / "client")
    (fdir / "authorized_keys").write_text(pub + "\n")
    ssh_port, fwd_port = free_port(), free_port()
    (fdir / "sshd_config").write_text("\n".join([
        "Port {}".format(ssh_port), "ListenAddress 127.0.0.1",
        "HostKey {}".format(fdir / "host"), "PidFile none", "UsePAM no",
        "StrictModes no", "AuthorizedKeysFile {}".format(fdir / "authorized_keys"),
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "AllowTcpForwarding remote",
        "GatewayPorts no", "X11Forwarding no", "PrintMotd no", ""]))
    procs.start(name + "-sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(fdir / "sshd_config")])
    wait_port(ssh_port)
    user = os.environ.get("USER") or "root"
    (fdir / "known_hosts").write_text("[127.0.0.1]:{} {}".format(
        ssh_port, (fdir / "host.pub").read_text()))
    procs.start(name + "-ssh", [
        "ssh", "-F", "/dev/null", "-i", str(fdir / "client"), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", "UserKnownHostsFile={}".format(fdir / "known_hosts"),
        "-o", "StrictHostKeyChecking=yes", "-o", "ExitOnForwardFailure=yes",
        "-o", "LogLevel=ERROR", "-tt", "-p", str(ssh_port), "-l", user,
        "-R", "127.0.0.1:{}:127.0.0.1:{}".format(fwd_port, backend_port),
        "127.0.0.1", "sleep 100000"])
    wait_port(fwd_port)
    return fdir, fwd_port


@contextlib.contextmanager
def floor_system(workdir, backend_port, procs):
    """OpenSSH sshd holding the forward, HAProxy routing by Host in front of it."""
    fdir, fwd_port = start_sshd_forward(workdir, backend_port, procs, "floor")
    http_port, https_port = free_port(), free_port()
    _, _, pem = self_signed(fdir)
    (fdir / "haproxy.cfg").write_text("""
global
  maxconn 4096
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse safe
frontend plain
  bind 127.0.0.1:{http}
  bind 127.0.0.1:{https} ssl crt {pem} alpn h2,http/1.1
  use_backend tunnel if {{ hdr(host) -i {host} }}
  default_backend none
backend tunnel
  server t 127.0.0.1:{fwd}
backend none
  http-request return status 404
""".format(http=http_port, https=https_port, pem=pem, host=HOST, fwd=fwd_port))
    proc = procs.start("floor-haproxy", ["haproxy", "-db", "-f", str(fdir / "haproxy.cfg")])
    wait_port(http_port)
    yield {"http": http_port, "https": https_port, "host": HOST, "pids": [proc.pid]}


PEER_BIN = ROOT / ".cache" / "peer" / "caddy"


@contextlib.contextmanager
def peer_system(workdir, backend_port, procs):
    """The same sshd forward with Caddy (Go) routing by Host and terminating TLS."""
    fdir, fwd_port = start_sshd_forward(workdir, backend_port, procs, "peer")
    http_port, https_port = free_port(), free_port()
    crt, key, _ = self_signed(fdir)
    (fdir / "Caddyfile").write_text("""{{
  admin off
  auto_https off
  persist_config off
}}
http://{host}:{http} {{
  reverse_proxy 127.0.0.1:{fwd}
}}
https://{host}:{https} {{
  tls {crt} {key}
  reverse_proxy 127.0.0.1:{fwd}
}}
""".format(host=HOST, http=http_port, https=https_port, crt=crt, key=key, fwd=fwd_port))
    env = dict(os.environ, HOME=str(fdir), XDG_DATA_HOME=str(fdir), XDG_CONFIG_HOME=str(fdir))
    proc = procs.start("peer-caddy", [str(PEER_BIN), "run", "--config", str(fdir / "Caddyfile"),
                                      "--adapter", "caddyfile"], env=env)
    wait_port(http_port)
    wait_port(https_port)
    yield {"http": http_port, "https": https_port, "host": HOST, "pids": [proc.pid]}


SYSTEMS = {"before": before_system, "edge": edge_system, "floor": floor_system,
           "peer": peer_system}


def measure(system, seconds, runs):
    """{row: {rps, p99, mbps}} medians for one system, plain and TLS."""
    out = {}
    for scheme in ("http", "https"):
        port = system[scheme]
        if not port:
            continue
        url = "{}://{}:{}".format(scheme, system["host"], port)
        for name, conns, keepalive in ROWS:
            rs = [wrk(url, system["host"], conns, seconds, keepalive) for _ in range(runs)]
            out["{}.{}".format(scheme, name)] = _median(rs)
        rs = [wrk(url, system["host"], 1, seconds, True, path="/bulk") for _ in range(runs)]
        out["{}.bulk".format(scheme)] = _median(rs)
        if scheme == "https":
            for name, conns in H2_ROWS:
                out["https." + name] = _median([h2load(url, conns, seconds) for _ in range(runs)])
    return out


def _median(rs):
    return {"rps": statistics.median(r["rps"] for r in rs),
            "p99": statistics.median(r["p99"] for r in rs),
            "mbps": statistics.median(r["mbps"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "socket_errors": "; ".join(r["socket_errors"] for r in rs if r["socket_errors"])}


def table(figures):
    names = list(figures)
    rows = sorted({row for f in figures.values() for row in f},
                  key=lambda r: (r.split(".")[0], [x[0] for x in ROWS + (("bulk",),) + H2_ROWS].index(
                      r.split(".")[1])))
    lines = ["{:<18}".format("row") + "".join("{:>24}".format(n) for n in names)]
    for row in rows:
        floor = figures.get("floor", {}).get(row)
        cells = []
        for n in names:
            f = figures[n].get(row)
            if f is None:
                cells.append("{:>24}".format("-"))
                continue
            value = f["mbps"] if row.endswith("bulk") else f["rps"]
            unit = "MB/s" if row.endswith("bulk") else "r/s"
            ratio = ""
            if floor and n != "floor":
                base = floor["mbps"] if row.endswith("bulk") else floor["rps"]
                ratio = " {:.2f}x".format(value / base) if base else ""
            errors = " !{}".format(f["errors"]) if f["errors"] else ""     # non-2xx answers
            cells.append("{:>24}".format("{:.0f} {} {} {:.1f}{}{}".format(
                value, unit, "mean" if ".h2_" in row else "p99", f["p99"], ratio, errors)))
        lines.append("{:<18}".format(row) + "".join(cells))
    lines.append("TLS keeps this share of plain HTTP (https / http):")
    for row in [r[0] for r in ROWS] + ["bulk"]:
        cells = []
        for n in names:
            plain, tls = figures[n].get("http." + row), figures[n].get("https." + row)
            key = "mbps" if row == "bulk" else "rps"
            share = "{:.2f}".format(tls[key] / plain[key]) if plain and tls and plain[key] else "-"
            cells.append("{:>24}".format(share))
        lines.append("{:<18}".format("  " + row) + "".join(cells))
    return "\n".join(lines)


def run(results, seconds=10, runs=3, only=None, workdir=None, before=None):
    """Measure every system in one run; add figures to results (bench.stats.Results).

    before: a checkout of an older edge to measure as well (BENCH_EDGE_BEFORE)."""
    BEFORE["dir"] = before or BEFORE["dir"]
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    if shutil.which("h2load") is None:
        raise RuntimeError("h2load is not installed (apt-get install nghttp2-client)")
    work = Path(workdir or tempfile.mkdtemp(prefix="sidebyside-"))
    figures = {}
    procs = Procs(work)
    try:
        backend_port = start_nginx(procs, work)
        for name, system in SYSTEMS.items():
            if only and name not in only:
                continue
            if name == "before" and not BEFORE["dir"]:
                continue
            if name == "peer" and not PEER_BIN.exists():
                results.note("peer (Caddy) skipped: no {} (bench/build_peer.sh builds it)".format(
                    PEER_BIN))
                continue
            sub = Procs(work)
            try:
                with system(work, backend_port, sub) as s:
                    figures[name] = measure(s, seconds, runs)
            finally:
                sub.stop()
    finally:
        procs.stop()
    for name, rows in figures.items():
        for row, f in rows.items():
            key = "sidebyside.{}.{}".format(name, row)
            if row.endswith("bulk"):
                results.add(key + ".mbps", [f["mbps"]], "MB/s")
            else:
                results.add(key + ".rps", [f["rps"]], "req/s",
                            note="{} errors {}".format(f["errors"], f["socket_errors"]).strip()
                            if f["errors"] or f["socket_errors"] else "")
                results.add(key + (".mean" if ".h2_" in row else ".p99"), [f["p99"]], "ms")
    print(table(figures), flush=True)
    return figures


def main(argv=None):
    from bench.stats import Results
    p = argparse.ArgumentParser(prog="python -m bench.sidebyside", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated systems: before,edge,floor,peer")
    p.add_argument("--before", default="", help="a checkout of an older edge to measure too "
                   "(e.g. `git archive 3ea5892 | tar -x -C /tmp/before`)")
    a = p.parse_args(argv)
    run(Results(), a.seconds, a.runs, [x for x in a.only.split(",") if x] or None,
        before=a.before or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
