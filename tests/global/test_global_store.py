"""Three edge nodes on one real PostgreSQL: one set of names, changes everywhere, placement."""

import concurrent.futures

import psycopg
import pytest

from edge.store.migrations import MIGRATIONS
from globaltest_helpers import edge_reason, forward_argv, make_account, until

pytestmark = pytest.mark.timeout(120)


def test_every_node_is_live_healthy_and_agrees_who_is(cluster):
    for node in cluster.nodes:
        status, body = cluster.health(node)
        assert status == 200 and body["serving"] is True and body["store"] == "ok", body
        assert body["live_nodes"] == ["node1", "node2", "node3"], body


def test_the_schema_is_migrated_once_and_shared_files_are_the_same_on_every_node(cluster):
    with psycopg.connect(cluster.store_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [m.version for m in MIGRATIONS]
    for name in ("jwt-secret", "ssh_host_ed25519_key", "ca.crt", "ca.key"):
        contents = {(n.data_dir / name).read_text() for n in cluster.nodes}
        assert len(contents) == 1, name


def test_a_change_on_one_node_reaches_every_node_and_its_data_plane(cluster, tmp_path, ssh, backend):
    a, b, c = cluster.nodes
    acct = make_account(a, tmp_path)                  # registered on A
    token = b.login(acct.email, acct.password)        # logs in on B
    assert c.api("GET", "/connect", token=token).status == 200       # and the token works on C
    made = b.api("POST", "/connect", {"name": "from-b"}, token=token)
    assert made.status == 200, made.body
    sock = made.body
    # C's API and C's data plane know the new name (no tunnel yet: 502 no-tunnel, not 404).
    until(lambda: c.api("GET", "/socket/" + sock["socket_id"], token=token).status == 200,
          what="the socket on C's API")
    until(lambda: edge_reason(c, sock["dnsname"]) == (502, "no-tunnel"), what="the name on C")
    # ...and its SSH server accepts the new tunnel's forward with the key it learnt from A.
    tunnel = sock["tunnels"][0]
    home = cluster.by_host(tunnel["tunnel_server"])
    be = backend("served")
    ssh.start(forward_argv(home, acct, tunnel["local_port"], be.port))
    home.wait_forward(tunnel["local_port"])
    assert home.get(sock["dnsname"], "/x") == (200, "served /x\n")
    # Deleting on C takes the name off every node.
    assert c.api("DELETE", "/socket/" + sock["socket_id"], token=token).status == 204
    for node in cluster.nodes:
        until(lambda node=node: edge_reason(node, sock["dnsname"])[0] == 404, what="the name gone")


def test_a_sockets_tunnels_are_placed_on_distinct_nodes_and_every_node_says_so(cluster, tmp_path):
    a, b, c = cluster.nodes
    acct = make_account(a, tmp_path)
    sock = a.api("POST", "/socket", {"name": "spread"}, token=acct.token).body
    servers = []
    for node in (a, b, c):          # each made through another node
        resp = node.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {}, token=acct.token)
        assert resp.status == 200, resp.body
        servers.append(resp.body["tunnel_server"])
    assert sorted(servers) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    path = "/socket/{}/tunnel".format(sock["socket_id"])
    for node in cluster.nodes:
        listed = until(lambda node=node: len(node.api("GET", path, token=acct.token).body) == 3 and
                       node.api("GET", path, token=acct.token).body, what="three tunnels")
        assert sorted(t["tunnel_server"] for t in listed) == sorted(servers)


def test_one_socket_per_name_even_when_every_node_is_asked_at_once(cluster, tmp_path):
    acct = make_account(cluster.nodes[0], tmp_path)

    def create(node):
        return node.api("POST", "/socket", {"name": "pool/shop", "unique_name": True},
                        token=acct.token)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(create, cluster.nodes * 2))
    assert all(r.status == 200 for r in answers), [r.body for r in answers]
    assert len({r.body["socket_id"] for r in answers}) == 1
    for node in cluster.nodes:
        until(lambda node=node: len(node.api("GET", "/connect", token=acct.token).body) == 1,
              what="one socket on every node")


def test_a_bad_store_url_is_one_clear_line_and_status_1(tmp_path):
    from edge.testing import EdgeProcess
    tmp_path.joinpath("secret").write_text("a cluster secret of some length")
    node = EdgeProcess(tmp_path / "lost", extra_args=(
        "--store", "postgresql://postgres@127.0.0.1:1/none", "--cluster-secret-file", str(tmp_path / "secret")))
    with pytest.raises(RuntimeError, match="exited with 1"):
        node.start()
    assert "cannot start the edge" in node.log_tail() and "127.0.0.1:1" in node.log_tail()


def test_what_one_node_made_is_there_at_once_on_the_others(cluster, tmp_path):
    """A client behind several nodes may send each request to another one: a record made on one
    node a millisecond ago is never 'not found' (or 'invalid token') on the next."""
    from edge.testing import ssh_keygen
    a, b, c = cluster.nodes
    for i in range(10):
        email = "hop{}-{}@example.com".format(i, tmp_path.name)
        assert a.api("POST", "/user", {"name": "hop", "email": email, "password": "pw-hop",
                                       "sshkey": ssh_keygen(tmp_path / "hop{}".format(i))}).status == 200
        token = b.login(email, "pw-hop")                                           # made on A
        sock = c.api("POST", "/socket", {"name": "hop"}, token=token)            # token from B
        assert sock.status == 200, sock.body
        path = "/socket/{}/tunnel".format(sock.body["socket_id"])
        tunnel = a.api("POST", path, {}, token=token)                              # socket from C
        assert tunnel.status == 200, tunnel.body
        assert b.api("GET", path + "/" + tunnel.body["tunnel_id"], token=token).status == 200
