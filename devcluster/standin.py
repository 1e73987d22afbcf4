"""Stand-in pods: small processes that play a Service's pods.

The local control plane has no kubelet, so a "pod" is a process bound directly
to the Service's ClusterIP:port (the ClusterIP lives on `lo` of the private
network namespace). Several stand-ins share one ClusterIP:port through
SO_REUSEPORT, and the kernel spreads new connections over them the way
kube-proxy spreads them over endpoints. In HTTP mode every GET is answered with
`Server: <pod name>\\n`, like the blog demo's app printing its hostname, so a
test (or the demo) can tell which pod served it; in --tcp-echo mode the stand-in
echoes raw bytes, for tcp sockets.

    python -m devcluster.standin --name demo-app-7f9c-abcde --bind 10.96.0.10:8000

The process prints READY on stdout once it listens, which is how StandIns knows
it is up (with several stand-ins on one port a probe connect could not tell
which one answered). SIGTERM or SIGINT stops it with exit code 0.
"""

import argparse
import http.server
import json
import logging
import os
import select
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .binaries import REPO_ROOT
from .names import pod_name
from .netns import add_cluster_ip
from .processes import Child

log = logging.getLogger(__name__)
READY_TIMEOUT = 10.0


# --- the stand-in process ---------------------------------------------------

class _SharedPortServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    allow_reuse_port = True     # the point: several stand-ins on one ClusterIP:port
    daemon_threads = True


class _HostnameHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pod_name = "stand-in"

    def do_GET(self) -> None:
        body = f"Server: {self.pod_name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def serve(name: str, host: str, port: int, tcp_echo: bool) -> int:
    if tcp_echo:
        handler = _EchoHandler
    else:
        handler = type("Handler", (_HostnameHandler,), {"pod_name": name})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with _SharedPortServer((host, port), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        print("READY", flush=True)
        stop.wait()
        server.shutdown()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.standin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="pod name to report")
    parser.add_argument("--bind", required=True, metavar="IP:PORT")
    parser.add_argument("--tcp-echo", action="store_true", help="echo raw TCP instead of HTTP")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="standin %(levelname)s %(message)s")
    host, _, port = args.bind.rpartition(":")
    return serve(args.name, host, int(port), args.tcp_echo)


# --- starting stand-ins from Python -----------------------------------------

@dataclass(frozen=True)
class StandIn:
    name: str
    ip: str
    port: int
    child: Child


class StandIns:
    """A set of stand-in pods that is stopped as a whole (use as a context manager)."""

    def __init__(self, control_plane=None, log_dir=None):
        self._control_plane = control_plane
        self._log_dir = Path(log_dir or (control_plane.workdir if control_plane
                                         else tempfile.gettempdir()))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.pods: list[StandIn] = []

    def start(self, name: str, ip: str, port: int, tcp_echo: bool = False) -> StandIn:
        """Start one stand-in bound to ip:port and wait for it to listen."""
        argv = [sys.executable, "-m", "devcluster.standin", "--name", name,
                "--bind", f"{ip}:{port}"] + (["--tcp-echo"] if tcp_echo else [])
        child = _StandInChild(name, argv, self._log_dir / f"standin-{name}.log")
        child.start()
        try:
            child.wait_ready(READY_TIMEOUT)
        except BaseException:
            child.stop()
            raise
        pod = StandIn(name, ip, port, child)
        self.pods.append(pod)
        return pod

    def for_service(self, namespace: str, service: str, count: int = 1,
                    port: Optional[int] = None, tcp_echo: bool = False) -> list[StandIn]:
        """Start `count` stand-ins on the Service's ClusterIP and port (first port
        unless `port` is given), adding the ClusterIP to `lo` first."""
        if self._control_plane is None:
            raise RuntimeError("StandIns needs a control plane to read Services")
        spec = json.loads(self._control_plane.kubectl(
            "get", "service", service, "-n", namespace, "-o", "json").stdout)["spec"]
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            raise ValueError(f"Service {namespace}/{service} has no ClusterIP")
        ports = [p["port"] for p in spec.get("ports", [])]
        if port is None:
            port = ports[0]
        elif port not in ports:
            raise ValueError(f"Service {namespace}/{service} has no port {port} (has {ports})")
        add_cluster_ip(ip)
        return [self.start(pod_name(service), ip, port, tcp_echo) for _ in range(count)]

    def stop(self, pod: Optional[StandIn] = None) -> None:
        """Stop one stand-in, or all of them."""
        for p in [pod] if pod else list(self.pods):
            p.child.stop()
            self.pods.remove(p)

    def __enter__(self) -> "StandIns":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _StandInChild(Child):
    """A Child whose stdout is a pipe carrying the READY line."""

    def _spawn(self, logfile) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        return subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logfile,
            start_new_session=True, close_fds=True, env=env)

    def wait_ready(self, timeout: float) -> None:
        ready, _, _ = select.select([self._popen.stdout], [], [], timeout)
        line = self._popen.stdout.readline() if ready else b""
        if line.strip() != b"READY":
            raise RuntimeError(
                f"stand-in {self.name} did not start ({'exited' if ready else 'timed out'}); "
                f"end of {self.log_path}:\n{self.log_tail()}")


if __name__ == "__main__":
    sys.exit(main())
