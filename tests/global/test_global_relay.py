"""Any node serves any name: requests are carried over the link to the node holding a tunnel."""

import http.client
import os
import signal
import socket
import subprocess

import pytest

from globaltest_helpers import forward_argv, make_account, until

pytestmark = pytest.mark.timeout(120)


def placed_socket(cluster, acct, on: list) -> tuple:
    """A socket with one tunnel per node of ``on`` (placement spreads them), and those tunnels."""
    a = cluster.nodes[0]
    sock = a.api("POST", "/socket", {"name": "relay"}, token=acct.token).body
    tunnels = [a.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {}, token=acct.token).body
               for _ in on]
    return sock, tunnels


def get_many(node, dnsname: str, n: int) -> list:
    """n requests on ONE keep-alive connection through node's front: their (status, body)."""
    conn = http.client.HTTPConnection(node.host, node.http_port, timeout=10)
    out = []
    try:
        for i in range(n):
            conn.request("GET", "/k{}".format(i), headers={"Host": dnsname})
            resp = conn.getresponse()
            out.append((resp.status, resp.read().decode()))
    finally:
        conn.close()
    return out


def test_a_name_whose_only_tunnel_is_on_one_node_answers_on_every_node(cluster, tmp_path, ssh, backend):
    acct = make_account(cluster.nodes[0], tmp_path)
    sock, (tunnel,) = placed_socket(cluster, acct, ["one"])
    home = cluster.by_host(tunnel["tunnel_server"])
    ssh.start(forward_argv(home, acct, tunnel["local_port"], backend("only-one").port))
    home.wait_forward(tunnel["local_port"])
    for node in cluster.nodes:
        assert node.get(sock["dnsname"], "/new") == (200, "only-one /new\n"), node.host
        assert get_many(node, sock["dnsname"], 5) == [(200, "only-one /k{}\n".format(i)) for i in range(5)]
    others = [n for n in cluster.nodes if n is not home]
    assert all(n.tunnels() == [] for n in others)       # the others hold no forward: they relay
    for node in cluster.nodes:                          # and every node's API says it is connected
        listed = node.api("GET", "/socket/" + sock["socket_id"], token=acct.token).body
        assert [t["connected"] for t in listed["tunnels"]] == [True], node.host


def test_a_tcp_socket_answers_on_every_node_too(cluster, tmp_path, ssh):
    acct = make_account(cluster.nodes[0], tmp_path)
    made = cluster.nodes[1].api("POST", "/connect", {"name": "tcp", "socket_type": "tcp"}, token=acct.token)
    assert made.status == 200, made.body
    sock, tunnel = made.body, made.body["tunnels"][0]
    echo = socket.create_server(("127.0.0.1", 0))
    home = cluster.by_host(tunnel["tunnel_server"])
    ssh.start(forward_argv(home, acct, tunnel["local_port"], echo.getsockname()[1]))
    home.wait_forward(tunnel["local_port"])
    port = sock["socket_tcp_ports"][0]
    try:
        for node in cluster.nodes:
            with socket.create_connection((node.host, port), timeout=5) as c:
                c.sendall(b"ping from " + node.host.encode())
                server, _ = echo.accept()
                with server:
                    assert server.recv(100) == b"ping from " + node.host.encode()
                    server.sendall(b"pong")
                    assert c.recv(10) == b"pong"
    finally:
        echo.close()


def test_failover_within_a_request_works_across_nodes(cluster, tmp_path, ssh, backend):
    """A socket with tunnels on two nodes; the client of one freezes: every request through the
    third node still gets an answer (the frozen one is tried, gives up in --open-timeout, and
    the other node's tunnel takes the request)."""
    acct = make_account(cluster.nodes[0], tmp_path)
    sock, tunnels = placed_socket(cluster, acct, ["one", "two"])
    procs = []
    for t, name in zip(tunnels, ("first", "second")):
        home = cluster.by_host(t["tunnel_server"])
        procs.append(ssh.start(forward_argv(home, acct, t["local_port"], backend(name).port)))
        home.wait_forward(t["local_port"])
    third = next(n for n in cluster.nodes if n.host not in {t["tunnel_server"] for t in tunnels})
    seen = {third.get(sock["dnsname"], "/")[1] for _ in range(6)}
    assert seen == {"first /\n", "second /\n"}            # both nodes' tunnels serve through the third
    os.kill(procs[0].pid, signal.SIGSTOP)                  # the first client freezes
    try:
        answers = [third.get(sock["dnsname"], "/x") for _ in range(6)]
    finally:
        os.kill(procs[0].pid, signal.SIGCONT)
    assert answers == [(200, "second /x\n")] * 6


def test_a_client_on_another_node_moves_its_tunnel_there_and_the_old_session_ends(cluster, tmp_path,
                                                                                   ssh, backend):
    """Newest session wins across nodes, and no node keeps a binding the edge no longer routes to:
    the old node ends the old session (its ssh exits), every node carries the name to the new."""
    acct = make_account(cluster.nodes[0], tmp_path)
    sock, (tunnel,) = placed_socket(cluster, acct, ["one"])
    first_home = cluster.by_host(tunnel["tunnel_server"])
    old = ssh.start(forward_argv(first_home, acct, tunnel["local_port"], backend("old").port))
    first_home.wait_forward(tunnel["local_port"])
    elsewhere = next(n for n in cluster.nodes if n is not first_home)
    ssh.start(forward_argv(elsewhere, acct, tunnel["local_port"], backend("new").port))
    elsewhere.wait_forward(tunnel["local_port"])
    assert old.wait(10) is not None                        # the old ssh exited: its session was ended
    path = "/socket/{}/tunnel/{}".format(sock["socket_id"], tunnel["tunnel_id"])
    for node in cluster.nodes:
        until(lambda node=node: node.api("GET", path, token=acct.token).body["tunnel_server"]
              == elsewhere.host, what="the tunnel recorded on its new node")
        until(lambda node=node: node.get(sock["dnsname"], "/") == (200, "new /\n"),
              what="the name served by the new client through " + node.host)
    assert first_home.tunnels() == []


def test_the_link_needs_the_cluster_secret(cluster, tmp_path):
    """Something that is not a node (no cluster secret) gets no link: the SSH handshake fails."""
    node = cluster.nodes[0]
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-i", "/dev/null",
         "-p", "2223", "-l", "node9", node.host, "true"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "Permission denied" in result.stderr
