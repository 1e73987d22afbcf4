"""The edge's own DNS on three nodes of one PostgreSQL: every node answers with every live node,
and a node that dies leaves the answers within a few seconds (membership's 3 s, no more)."""

import os
import signal
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from edge.clustertesting import ClusterOptions, EdgeCluster
from globaltest_helpers import until

pytestmark = pytest.mark.timeout(180)

DNS_PORT = 5353
ALL = {"127.0.1.1", "127.0.1.2", "127.0.1.3"}


@pytest.fixture(scope="module")
def dns_cluster(pg, tmp_path_factory):
    options = ClusterOptions(extra_args=("--dns-port", str(DNS_PORT)))
    with EdgeCluster(tmp_path_factory.mktemp("dns"), pg.new_database("dns"), 3, options) as nodes:
        nodes.wait_live(3)
        yield nodes


def answer(node, name="blue-snowflake-1578.edge.localhost", tcp=False) -> set:
    q = dns.message.make_query(name, "A")
    ask = dns.query.tcp if tcp else dns.query.udp
    try:
        m = ask(q, node.host, port=DNS_PORT, timeout=1)
    except (OSError, dns.exception.Timeout):
        return set()
    assert m.rcode() == dns.rcode.NOERROR, m
    return {rr.address for rrset in m.answer for rr in rrset}


def test_every_node_answers_with_every_live_node(dns_cluster):
    for node in dns_cluster.nodes:
        for tcp in (False, True):
            until(lambda node=node, tcp=tcp: answer(node, tcp=tcp) == ALL,
                  what="all three nodes in {}'s answer".format(node.host))
            assert answer(node, "api.edge.localhost", tcp) == ALL
            assert answer(node, "edge.localhost", tcp) == ALL


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_dead_node_leaves_the_answers_within_seconds(dns_cluster, how):
    victim, alive = dns_cluster.nodes[2], dns_cluster.nodes[:2]
    for node in alive:
        until(lambda node=node: answer(node) == ALL, what="all three nodes answered")
    t0 = time.monotonic()
    if how == "killed":
        os.kill(victim.pid, signal.SIGKILL)         # its data plane follows it (PDEATHSIG)
    else:
        victim.stop()                               # a clean stop leaves the edge at once
    try:
        for node in alive:
            # membership declares it dead after 3 s of silence; 20 s leaves room for a loaded host
            until(lambda node=node: answer(node) == ALL - {victim.host}, timeout=20,
                  what="{} gone from {}'s answers".format(victim.host, node.host))
        print("{} node left the answers after {:.1f} s".format(how, time.monotonic() - t0))
    finally:
        victim.stop()
        victim.start()
    dns_cluster.wait_live(3)
    for node in dns_cluster.nodes:
        until(lambda node=node: answer(node) == ALL, what="the node back in the answers")
