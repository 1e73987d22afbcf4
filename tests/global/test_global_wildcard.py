"""The zone's one wildcard on three nodes of one PostgreSQL: one order for the whole edge, the
same certificate on every node, taken from the store by a node that starts.

Pebble starts after the nodes (whose first attempts fail and back off), and asks
the last node's DNS: the TXT values published by whichever node orders must
reach it through the store.
"""

import pytest

from edge.clustertesting import ClusterOptions, EdgeCluster
from edge.pebbletesting import Pebble, free_port, have_pebble, verified_serial
from globaltest_helpers import until

pytestmark = pytest.mark.timeout(240)

ZONE = "edge.test"
DNS_PORT = 5353


@pytest.fixture(scope="module")
def acme_cluster(pg, tmp_path_factory):
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    work = tmp_path_factory.mktemp("wildcard")
    with Pebble(work / "pebble", validity_seconds=3600) as pebble:
        options = ClusterOptions(domain=ZONE, extra_args=(
            "--dns-port", str(DNS_PORT), "--acme-directory", pebble.directory,
            "--acme-ca", str(pebble.ca), "--acme-email", "ops@example.com"))
        with EdgeCluster(work, pg.new_database("wildcard"), 3, options) as nodes:
            nodes.wait_live(3)
            pebble.start(free_port(), dns_server="{}:{}".format(nodes.nodes[2].host, DNS_PORT))
            root = work / "pebble-root.pem"
            root.write_text(pebble.root())
            yield nodes, pebble, root


def test_one_order_for_the_edge_and_every_node_serves_it(acme_cluster):
    nodes, pebble, root = acme_cluster
    serials = {n.host: until(lambda n=n: verified_serial(n, "api." + ZONE, root), timeout=90,
                             what="{} serving the zone's certificate".format(n.host))
               for n in nodes.nodes}
    assert len(set(serials.values())) == 1, serials
    for node in nodes.nodes:
        assert verified_serial(node, "any-socket." + ZONE, root) == serials[node.host]
    assert pebble.orders() == 1
    ordered = [n.host for n in nodes.nodes if "wildcard for edge.test: issued" in n.log_tail(400)]
    assert len(ordered) == 1, ordered
    print("ordered by {}, validated through the DNS of {}".format(ordered[0], nodes.nodes[2].host))


def test_a_node_that_starts_takes_it_from_the_store(acme_cluster):
    nodes, pebble, root = acme_cluster
    node = nodes.nodes[1]
    serial = until(lambda: verified_serial(nodes.nodes[0], "api." + ZONE, root), timeout=90,
                   what="a certificate")
    node.stop()
    node.start()
    assert verified_serial(node, "api." + ZONE, root) == serial    # there at READY
    assert pebble.orders() == 1
    nodes.wait_live(3)
