"""A custom hostname's certificate on two nodes of one PostgreSQL: one order for the whole edge, the
same certificate on both nodes, kept sealed in the store, taken from it by a node that starts.

pebble-challtestsrv is the names' DNS: the name's A record is node 2's address, so the CA's HTTP-01
request reaches node 2 whichever node ordered (when node 1 did, node 2 answers with what node 1
published through the store).
"""

import pytest

from edge.clustertesting import PORTS, ClusterOptions, EdgeCluster
from edge.pebbletesting import Pebble, have_pebble, verified_serial
from edge.testclients import make_account
from globaltest_helpers import until

pytestmark = pytest.mark.timeout(240)

NAME = "shop.example.test"


@pytest.fixture(scope="module")
def two_nodes(pg, tmp_path_factory):
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    work = tmp_path_factory.mktemp("hostnames")
    with Pebble(work / "pebble", validity_seconds=3600) as pebble:
        options = ClusterOptions(extra_args=(
            "--acme-directory", pebble.directory, "--acme-ca", str(pebble.ca), "--acme-email", "ops@example.com",
            "--hostname-resolver", "127.0.0.1:{}".format(pebble.dns_port)))
        with EdgeCluster(work, pg.new_database("hostnames"), 2, options) as nodes:
            nodes.wait_live(2)
            pebble.start(PORTS["http"])
            root = work / "pebble-root.pem"
            root.write_text(pebble.root())
            yield nodes, pebble, root, work


def test_one_order_for_the_edge_and_both_nodes_serve_it(two_nodes):
    nodes, pebble, root, work = two_nodes
    first, second = nodes.nodes
    acct = make_account(first, work)
    sock = first.api("POST", "/socket", {"name": "shop"}, token=acct.token).body
    pebble.dns("add-a", host=NAME + ".", addresses=[second.host])

    def claim():
        return first.api("PUT", "/socket/{}/hostnames".format(sock["socket_id"]), {"hostnames": [NAME]},
                         token=acct.token).body["hostnames"][0]
    txt = next(r["value"] for r in claim()["records"] if r["type"] == "TXT")   # proven by TXT: the A record
    pebble.dns("set-txt", host="_mysocket-challenge.{}.".format(NAME), value=txt)   # stays node 2's
    assert claim()["verified"] is True
    serials = {n.host: until(lambda n=n: verified_serial(n, NAME, root), timeout=90,
                             what="{} serving {}'s certificate".format(n.host, NAME)) for n in nodes.nodes}
    assert len(set(serials.values())) == 1, serials
    assert pebble.orders() == 1
    ordered = [n.host for n in nodes.nodes if "certificate for {}: issued".format(NAME) in n.log_tail(400)]
    assert len(ordered) == 1, ordered
    print("ordered by {}, validated through {}".format(ordered[0], second.host))

    first.stop()                         # a node that starts takes it from the store, sealed there
    first.start()
    assert until(lambda: verified_serial(first, NAME, root), timeout=30, what="the stored certificate") \
        == serials[second.host]
    assert pebble.orders() == 1
