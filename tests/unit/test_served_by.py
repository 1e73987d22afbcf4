"""The `mysocket.io/served-by` line: what `kubectl describe service` says serves the name."""

from lib.sweep import served_by

POOL = {"name": "mysocketd-pool/shop", "tunnels": []}


def tunnel(owner, server, connected=True):
    return {"owner": owner, "tunnel_server": server, "connected": connected}


def test_no_connected_tunnel_says_so():
    assert served_by({"tunnels": [tunnel("c1/ns/web/r1", "edge-a", connected=False)]}, "c1") == "no tunnel connected"


def test_this_clusters_replicas_and_the_edge_nodes_they_are_on():
    socket = {"tunnels": [tunnel("c1/ns/web/r2", "edge-b.example.org"), tunnel("c1/ns/web/r1", "edge-a.example.org")]}
    assert served_by(socket, "c1") == ("2 tunnels connected; this cluster: 2 (r1, r2); "
                                       "edge nodes: edge-a.example.org, edge-b.example.org")


def test_a_pool_names_the_other_clusters_but_never_grows_without_bound():
    others = [tunnel(f"c{i}/ns/web/r1", "edge-a") for i in range(2, 8)]
    said = served_by({**POOL, "tunnels": [tunnel("c1/ns/web/r1", "edge-a")] + others}, "c1")
    assert said == ("7 tunnels connected; this cluster: 1 (r1); other clusters: 6 (c2, c3, c4 and 3 more); "
                    "edge node: edge-a")


def test_a_tunnel_of_an_older_release_without_owner_or_node_still_counts():
    said = served_by({**POOL, "tunnels": [{"connected": True}, tunnel("c1/ns/web/r1", "")]}, "c1")
    assert said == "2 tunnels connected; this cluster: 1 (r1); other clusters: 1"
