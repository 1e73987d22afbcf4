"""One certificate for the zone by ACME DNS-01, answered by the edge's own DNS, from real Pebble.

Pebble's ``-dnsserver`` is the edge's DNS: it checks the TXT values the edge
publishes there. 60 sockets cost one order; every name is served with a
certificate valid for it, verified by a client that trusts only Pebble's root;
the certificate is renewed before expiry without dropping a connection.
"""

import ssl
import time

import pytest

from edge.testing import EdgeOptions, EdgeProcess
from edgetest_helpers import make_account
from pebble_helpers import Pebble, free_port, handshake, have_pebble, verified_serial

pytestmark = pytest.mark.timeout(240)

ZONE = "edge.test"


def serial_of(conn: ssl.SSLSocket) -> str:
    return conn.getpeercert()["serialNumber"]


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("{} not within {} s".format(what, timeout))


def get(conn: ssl.SSLSocket, name: str, path: str) -> int:
    conn.sendall("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n".format(path, name).encode())
    f = conn.makefile("rb")
    status = int(f.readline().split()[1])
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    f.read(length)
    return status


@pytest.fixture
def pebble(tmp_path, request):
    """Pebble issuing certificates valid for 3600 s, or the seconds the test parametrizes."""
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    with Pebble(tmp_path / "pebble", validity_seconds=getattr(request, "param", 3600)) as p:
        yield p


def start_edge(tmp_path, pebble, *extra) -> EdgeProcess:
    dns_port = free_port()
    pebble.start(free_port(), dns_server="127.0.0.1:{}".format(dns_port))   # no HTTP-01 here
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root())
    edge = EdgeProcess(tmp_path / "edge", EdgeOptions(domain=ZONE, extra_args=(
        "--dns-port", str(dns_port), "--acme-directory", pebble.directory,
        "--acme-ca", str(pebble.ca), "--acme-email", "ops@example.com", *extra)))
    return edge, root


def test_sixty_sockets_one_order_every_name_valid(tmp_path, pebble):
    edge, root = start_edge(tmp_path, pebble)
    with edge:
        acct = make_account(edge, tmp_path)
        names = []
        for i in range(60):
            resp = edge.api("POST", "/socket", {"name": "s{}".format(i)}, token=acct.token)
            assert resp.status == 200, resp.body
            names.append(resp.body["dnsname"])
        serial = until(lambda: verified_serial(edge, names[0], root), 60, "the zone's certificate")
        for name in names + ["api." + ZONE]:
            with handshake(edge, name, root) as conn:   # raises unless valid for name under pebble's root
                assert serial_of(conn) == serial
        assert pebble.orders() == 1
        # A name nobody serves still gets no order of its own; the wildcard simply covers it.
        assert verified_serial(edge, "nobody." + ZONE, root) == serial
        assert pebble.orders() == 1
        # Restarted, the edge takes the certificate from its store instead of ordering again.
        edge.restart()
        assert verified_serial(edge, names[1], root) == serial
        assert pebble.orders() == 1
        issued = edge.log_path.read_text().count("wildcard for edge.test: issued")
        assert issued == 1, "{} orders by the edge".format(issued)
        assert "BEGIN" not in (edge.data_dir / "edge.sqlite3").read_bytes().decode(errors="replace"), \
            "the certificate's key is in the store in clear"


@pytest.mark.parametrize("pebble", [15], indirect=True)
def test_renewed_before_expiry_without_dropping_a_connection(tmp_path, pebble):
    # 15 s certificates are renewed with a third of their life left: about 10 s after issue
    # (--acme-renew-before, 30 days, is longer than the whole life).
    edge, root = start_edge(tmp_path, pebble)
    name = "api." + ZONE
    with edge:
        first = until(lambda: verified_serial(edge, name, root), 60, "the zone's certificate")
        kept = handshake(edge, name, root)
        try:
            assert get(kept, name, "/health") == 200
            second = until(lambda: (s := verified_serial(edge, name, root)) != first and s, 60,
                           "a renewed certificate")
            assert second and pebble.orders() >= 2
            assert get(kept, name, "/health") == 200           # the open connection is kept
            assert serial_of(kept) == first
        finally:
            kept.close()
