"""ACME orders per 100 new sockets: one certificate per name (HTTP-01) against the zone's one
wildcard (DNS-01 answered by the edge's own DNS), counted by a real Pebble.

    unshare --net --pid --fork --kill-child --mount-proc -- sh -c \\
        'ip link set lo up && .venv/bin/python -m bench.acmeorders --sockets 100'

For each mode: a fresh Pebble and a fresh edge; N sockets are made through the API and each
name gets one TLS handshake verified against Pebble's root alone; the line printed is the
number of orders Pebble counted and how many names were served with a valid certificate.
A count, not a duration: it does not move with the machine's load.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from edge.pebbletesting import Pebble, free_port, verified_serial
from edge.testclients import make_account
from edge.testing import EdgeOptions, EdgeProcess

ZONE = "edge.test"


def run(mode: str, sockets: int, workdir: Path) -> tuple:
    with Pebble(workdir / "pebble", validity_seconds=3600) as pebble:
        http_port, dns_port = free_port(), free_port()
        if mode == "zone":
            pebble.start(free_port(), dns_server="127.0.0.1:{}".format(dns_port))
            extra = ("--dns-port", str(dns_port))
        else:                                    # HTTP-01 to the edge's HTTP port, names -> 127.0.0.1
            pebble.start(http_port)
            extra = ()
        root = workdir / "root.pem"
        root.write_text(pebble.root())
        edge = EdgeProcess(workdir / "edge", EdgeOptions(domain=ZONE, extra_args=(
            "--acme-directory", pebble.directory, "--acme-ca", str(pebble.ca), *extra)))
        edge._ports["http"] = http_port
        with edge:
            acct = make_account(edge, workdir)
            names = [edge.api("POST", "/socket", {"name": "s{}".format(i)}, token=acct.token)
                     .body["dnsname"] for i in range(sockets)]
            served = 0
            for name in names:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if verified_serial(edge, name, root):
                        served += 1
                        break
                    time.sleep(0.2)
            return pebble.orders(), served


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.acmeorders", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sockets", type=int, default=100)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acmeorders-") as tmp:
        for mode, label in (("name", "one certificate per name (HTTP-01)"),
                            ("zone", "the zone's wildcard (DNS-01, the edge's own DNS)")):
            orders, served = run(mode, a.sockets, Path(tmp) / mode)
            print("{}: {} ACME orders for {} new sockets, {} served with a valid certificate"
                  .format(label, orders, a.sockets, served), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
