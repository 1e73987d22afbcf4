"""gRPC through the edge vs direct, in one run (issue 23): a unary rate and a streaming rate.

    .venv/bin/python -m bench.grpcrate [--seconds 5]
    (inside `unshare --net`; `make bench` runs it as the group "grpc")

One real grpcio server (edge.grpctesting.EchoServer) loaded by h2load (nghttp2-client)
sending gRPC frames, first directly (h2c), then through the edge (TLS and HTTP/2 to the
edge, h2c through an `ssh -R` tunnel to the same server):

  unary    /echo.Echo/Unary, 1 connection x 10 streams for --seconds: calls/s
  stream   /echo.Echo/Count of 20,000 messages, 4 calls one after the other: messages/s

The server is Python, so both paths are bounded by it: the ratio says what the edge costs a
real gRPC server, not what the edge could carry.
"""

import argparse
import re
import struct
import subprocess
import tempfile
from pathlib import Path

from bench.sidebyside import Procs, _ms
from edge.grpctesting import COUNT, UNARY, EchoServer
from edge.testing import EdgeProcess, ssh_keygen

STREAM_MESSAGES, STREAM_CALLS = 20000, 4


def _frame(path: Path, payload: bytes) -> Path:
    """A request body of one gRPC message (uncompressed, length-prefixed)."""
    path.write_bytes(b"\x00" + struct.pack(">I", len(payload)) + payload)
    return path


def _h2load(url: str, body: Path, load: list, via_edge: tuple = ()) -> tuple:
    """(seconds, calls that succeeded) of one h2load run of gRPC calls to url."""
    argv = ["h2load", *load, "-d", str(body), "-H", "content-type: application/grpc",
            "-H", "te: trailers", *via_edge, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300).stdout
    took = re.search(r"finished in ([\d.]+\w+),", out)
    ok = re.search(r"(\d+) succeeded", out)
    if not took or not ok:
        raise RuntimeError("h2load: " + out[-500:])
    return _ms(took.group(1)) / 1000, int(ok.group(1))


def measure(base: str, work: Path, seconds: int, via_edge: tuple = ()) -> dict:
    unary_body = _frame(work / "unary.bin", b"hello")
    count_body = _frame(work / "count.bin", str(STREAM_MESSAGES).encode())
    took, ok = _h2load(base + UNARY, unary_body, ["-D", str(seconds), "-c", "1", "-m", "10"], via_edge)
    unary = ok / took
    took, ok = _h2load(base + COUNT, count_body, ["-n", str(STREAM_CALLS), "-c", "1", "-m", "1"], via_edge)
    if ok != STREAM_CALLS:
        raise RuntimeError("{} of {} streaming calls succeeded".format(ok, STREAM_CALLS))
    return {"unary": unary, "stream": STREAM_CALLS * STREAM_MESSAGES / took}


def run(results, seconds: int = 5, workdir=None) -> dict:
    work = Path(workdir or tempfile.mkdtemp(prefix="grpcrate-"))
    work.mkdir(parents=True, exist_ok=True)
    procs = Procs(work)
    figures = {}
    try:
        with EchoServer() as server:
            figures["direct"] = measure("http://127.0.0.1:{}".format(server.port), work, seconds)
            with EdgeProcess(work / "edge", admin=True, log_level="WARNING",
                             extra_args=("--visitor-share", "1")) as edge:
                pub = ssh_keygen(work / "key")
                user = edge.register("grpc@example.com", "bench-pw", pub)
                token = edge.login("grpc@example.com", "bench-pw")
                sock = edge.api("POST", "/connect", {"name": "grpc", "upstream_protocol": "h2c"},
                                token=token).body
                port = sock["tunnels"][0]["local_port"]
                procs.start("grpc-ssh", edge.ssh_argv(work / "key", user["user_name"], options=[
                    "-N", "-R", "{}:127.0.0.1:{}".format(port, server.port)]))
                edge.wait_forward(port)
                host = sock["dnsname"]
                via = ("--connect-to", "127.0.0.1:{}".format(edge.https_port), "-H", ":authority: " + host)
                figures["edge"] = measure("https://{}:{}".format(host, edge.https_port), work, seconds, via)
                procs.stop()
    finally:
        procs.stop()
    for name, f in figures.items():
        results.add("grpc.{}.unary".format(name), [f["unary"]], "calls/s")
        results.add("grpc.{}.stream".format(name), [f["stream"]], "msgs/s")
    d, e = figures["direct"], figures["edge"]
    print("grpc (grpcio server, h2load)      direct          edge", flush=True)
    print("  unary, 1 conn x 10 streams   {:>8.0f}/s   {:>8.0f}/s ({:.2f}x)".format(
        d["unary"], e["unary"], e["unary"] / d["unary"]), flush=True)
    print("  server stream, messages      {:>8.0f}/s   {:>8.0f}/s ({:.2f}x)".format(
        d["stream"], e["stream"], e["stream"] / d["stream"]), flush=True)
    return figures


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.grpcrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=5)
    args = p.parse_args(argv)

    class Print:
        def add(self, key, values, unit, note=""):
            pass

        def note(self, text):
            print(text)

    run(Print(), seconds=args.seconds)


if __name__ == "__main__":
    main()
