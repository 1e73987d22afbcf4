"""The edge's own DNS on one node, queried over real UDP and TCP with dnspython.

The zone answers with the node's address, SOA/NS are right, names that cannot
exist get NXDOMAIN, names outside the zone are refused (no open resolver), and
nothing amplifies: ANY is one small record, UDP answers fit what the client
takes, and each source gets a bounded number of answers.
"""

import json
import socket
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from edge.testing import EdgeOptions, EdgeProcess
from edgetest_helpers import make_account, new_socket

pytestmark = pytest.mark.timeout(120)

ZONE = "edge.test"
ANSWERS_PER_MINUTE = 20


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    with EdgeProcess(tmp_path_factory.mktemp("dns"), EdgeOptions(domain=ZONE, extra_args=(
            "--dns-port", "0", "--dns-answers-per-minute", str(ANSWERS_PER_MINUTE)))) as e:
        assert e.dns_port
        yield e


def ask(edge, name, rdtype="A", source="127.0.0.1", tcp=False, payload=None, timeout=3.0):
    """One query from ``source`` (each test its own: the answer budget is per source)."""
    q = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                               payload=payload or 512)
    if tcp:
        return dns.query.tcp(q, edge.host, port=edge.dns_port, timeout=timeout, source=source)
    return dns.query.udp(q, edge.host, port=edge.dns_port, timeout=timeout, source=source,
                         ignore_trailing=True)


def addresses(answer) -> set:
    return {rr.address for rrset in answer.answer for rr in rrset}


def test_every_name_of_the_zone_answers_with_the_node(edge, tmp_path):
    acct = make_account(edge, tmp_path)
    dnsname = new_socket(edge, acct)["dnsname"]
    assert dnsname.endswith("." + ZONE)
    src = "127.0.0.11"
    for name in (dnsname, "api." + ZONE, ZONE, "ns1." + ZONE):
        for tcp in (False, True):
            m = ask(edge, name, source=src, tcp=tcp)
            assert m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.AA, (name, m)
            assert addresses(m) == {"127.0.0.1"}, (name, m)
            assert all(rrset.ttl == 30 for rrset in m.answer)
            assert not m.flags & dns.flags.RA           # authoritative only, never recursive
    soa = ask(edge, ZONE, "SOA", source=src).answer[0][0]
    assert (str(soa.mname), str(soa.rname), soa.minimum) == \
        ("ns1.edge.test.", "hostmaster.edge.test.", 30)
    ns = {str(rr.target) for rr in ask(edge, ZONE, "NS", source=src).answer[0]}
    assert ns == {"ns1.edge.test.", "ns2.edge.test."}


def test_names_that_cannot_exist_and_types_a_name_lacks(edge):
    src = "127.0.0.12"
    deeper = ask(edge, "a.b." + ZONE, source=src)
    assert deeper.rcode() == dns.rcode.NXDOMAIN and not deeper.answer
    assert deeper.authority[0].rdtype == dns.rdatatype.SOA    # negative caching for 30 s
    nodata = ask(edge, "x." + ZONE, "MX", source=src)
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("name", ["example.com", "edge.test.example.com", "test", "notedge.test"])
def test_a_name_outside_the_zone_is_refused(edge, name):
    for tcp in (False, True):
        m = ask(edge, name, source="127.0.0.13", tcp=tcp)
        assert m.rcode() == dns.rcode.REFUSED and not m.answer and not m.flags & dns.flags.AA


def set_challenge(edge, values: list) -> None:
    """What the control plane tells the data plane while this node orders the zone's certificate
    (PUT /nodes on the control socket: this node, its address and its DNS-01 TXT values)."""
    body = json.dumps({"self": "127.0.0.1", "nodes": [
        {"name": "127.0.0.1", "link": "", "tunnel_server": "127.0.0.1",
         "addresses": ["127.0.0.1"], "challenge": values}]}).encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(edge.data_dir / "dataplane.sock"))
        s.sendall(b"PUT /nodes HTTP/1.1\r\nHost: dataplane\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply


def test_any_and_large_answers_do_not_amplify(edge):
    src = "127.0.0.14"
    q = dns.message.make_query(ZONE, "ANY", use_edns=True, payload=4096)
    raw = dns.query.udp(q, edge.host, port=edge.dns_port, timeout=3, source=src)
    assert [rrset.rdtype for rrset in raw.answer] == [dns.rdatatype.HINFO]   # RFC 8482
    assert len(raw.to_wire()) <= len(q.to_wire()) + 64
    # A TXT set of ~2.5 KB: over UDP the answer fits what the client said it takes.
    set_challenge(edge, ["v{:02d}-".format(i) + "x" * 55 for i in range(40)])
    try:
        for payload in (None, 1232):
            m = ask(edge, "_acme-challenge." + ZONE, "TXT", source=src, payload=payload)
            assert m.flags & dns.flags.TC and len(m.to_wire()) <= (payload or 512), payload
        whole = ask(edge, "_acme-challenge." + ZONE, "TXT", source=src, tcp=True)
        assert sum(len(rrset) for rrset in whole.answer) == 40
    finally:
        set_challenge(edge, [])
    assert not ask(edge, "_acme-challenge." + ZONE, "TXT", source=src, tcp=True).answer


def test_answers_per_source_are_bounded(edge):
    """A flood from one (spoofable) source gets its budget, then nothing or a small TC answer."""
    answered = dropped = empty = 0
    started = time.monotonic()
    for _ in range(3 * ANSWERS_PER_MINUTE):
        try:
            m = ask(edge, "x." + ZONE, source="127.0.0.15", timeout=1.0)
        except dns.exception.Timeout:
            dropped += 1
            continue
        if m.answer:
            answered += 1
        else:
            assert m.flags & dns.flags.TC
            empty += 1
    # the budget, then what it refilled (20 a minute) while the flood lasted, and no more
    refilled = (time.monotonic() - started) / 60 * ANSWERS_PER_MINUTE
    assert ANSWERS_PER_MINUTE <= answered <= ANSWERS_PER_MINUTE + refilled + 1, \
        (answered, dropped, empty, refilled)
    assert dropped and empty
    assert ask(edge, "x." + ZONE, source="127.0.0.16").answer     # another source is unaffected
    assert ask(edge, "x." + ZONE, source="127.0.0.15", tcp=True).answer   # TCP is not limited


@pytest.mark.parametrize("argv,dns_port,public_ips", [
    ([], None, ("127.0.0.1",)),                                    # no DNS unless asked
    (["--dns-port", "53", "--listen", "192.0.2.7"], 53, ("192.0.2.7",)),
    (["--dns-port", "0", "--listen", "0.0.0.0", "--tunnel-server", "198.51.100.1"], 0,
     ("198.51.100.1",)),
    (["--dns-port", "53", "--listen", "::", "--public-ip", "192.0.2.1, 2001:db8::1"], 53,
     ("192.0.2.1", "2001:db8::1")),
])
def test_dns_flags(argv, dns_port, public_ips):
    from edge.config import parse_args
    config = parse_args(argv, {})
    assert (config.dns_port, config.public_ips) == (dns_port, public_ips)


@pytest.mark.parametrize("argv", [
    ["--dns-port", "53", "--listen", "0.0.0.0"],           # no address to give out
    ["--dns-port", "53", "--public-ip", "node1.example.com"],
    ["--dns-port", "seventy"],
])
def test_dns_flags_refused(argv, capsys):
    from edge.config import parse_args
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, {})
    assert exc.value.code == 2 and "--" in capsys.readouterr().err.splitlines()[-1]
