"""The edge's data plane with the real OpenSSH client: forwards, refusals, fronts."""

import http.client
import signal
import socket
import subprocess
import time

import pytest

from edgetest_helpers import forward_argv, new_socket
from edge.testing import pattern_bytes

pytestmark = pytest.mark.timeout(60)


def wait_exit(proc: subprocess.Popen, timeout: float = 10) -> int:
    return proc.wait(timeout)


def wait_for_text(path, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError("{!r} not in {}: {!r}".format(text, path, path.read_text()))


def wait_for_new_forward(edge, port: int, old_peer: str, timeout: float = 15) -> dict:
    """The forward of port once a session other than old_peer's holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in edge.tunnels():
            if t["local_port"] == port and t["peer"] != old_peer:
                return t
        time.sleep(0.05)
    raise AssertionError("port {} still held by {}".format(port, old_peer))


def raw_get(edge, host: str, headers: dict = None):
    """(status, headers, body) of a GET through the front, headers included."""
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def test_forward_serves_http_and_survives_keepalives(edge, account, ssh, backend):
    be = backend("b1")
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    proc = ssh.start(forward_argv(edge, account, port, be.port))
    edge.wait_forward(port)
    assert edge.get(sock["dnsname"], "/hello") == (200, "b1 /hello\n")
    assert edge.get(sock["dnsname"].upper() + ":8000", "/x") == (200, "b1 /x\n")
    # ServerAliveInterval=1, CountMax=2: unanswered keepalives would end ssh within ~3 s.
    time.sleep(3.5)
    assert proc.poll() is None, proc.out_path.read_text()
    assert edge.get(sock["dnsname"], "/again") == (200, "b1 /again\n")
    [listed] = [t for t in edge.tunnels() if t["local_port"] == port]
    assert listed["user_name"] == account.user_name
    assert listed["dnsname"] == sock["dnsname"]


def test_large_bodies_cross_the_tunnel_intact(edge, account, ssh, backend):
    be = backend()
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    ssh.start(forward_argv(edge, account, port, be.port))
    edge.wait_forward(port)
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=20)
    try:
        conn.request("GET", "/bytes/3000000", headers={"Host": sock["dnsname"]})
        assert conn.getresponse().read() == pattern_bytes(3000000)
    finally:
        conn.close()
    upload = pattern_bytes(2000000)[::-1]
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=20)
    try:
        conn.request("POST", "/", body=upload, headers={"Host": sock["dnsname"]})
        assert conn.getresponse().read() == upload
    finally:
        conn.close()


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_other_key_types_log_in(edge, new_account, ssh, backend, key_type):
    acct = new_account(key_type)
    be = backend(key_type)
    sock = new_socket(edge, acct)
    port = sock["tunnels"][0]["local_port"]
    ssh.start(forward_argv(edge, acct, port, be.port))
    edge.wait_forward(port)
    assert edge.get(sock["dnsname"]) == (200, "{} /\n".format(key_type))


def test_forward_of_a_port_that_is_no_tunnel_is_refused(edge, account, ssh, backend):
    new_socket(edge, account)
    result = ssh.run(forward_argv(edge, account, 9999, backend().port))
    assert result.returncode != 0
    assert b"remote port forwarding failed" in result.stderr
    assert "port=9999: not a tunnel of this account" in edge.log_tail(200)


def test_forward_of_another_accounts_port_is_refused(edge, account, new_account, ssh,
                                                     backend):
    victim = new_account()
    sock = new_socket(edge, victim)
    port = sock["tunnels"][0]["local_port"]
    result = ssh.run(forward_argv(edge, account, port, backend().port))
    assert result.returncode != 0
    assert b"remote port forwarding failed" in result.stderr
    assert edge.get(sock["dnsname"])[0] == 502


def test_newest_session_of_the_same_account_wins_the_port(edge, account, ssh, backend):
    """A second session for a held port takes it at once; the first one, left
    serving nothing, is closed (its ssh exits)."""
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    first = ssh.start(forward_argv(edge, account, port, backend("first").port))
    edge.wait_forward(port)
    assert edge.get(sock["dnsname"]) == (200, "first /\n")
    second = ssh.start(forward_argv(edge, account, port, backend("second").port))
    wait_exit(first)
    assert "newest session wins" in edge.log_tail(200)
    assert second.poll() is None
    assert {edge.get(sock["dnsname"]) for _ in range(4)} == {(200, "second /\n")}


def test_newest_session_wins_over_a_frozen_one(edge, account, ssh, backend):
    """A SIGSTOPped client (no FIN, no RST) does not hold its port: a new
    session forwards at once, and visitors reach the new one."""
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    frozen = ssh.start(forward_argv(edge, account, port, backend("frozen").port))
    edge.wait_forward(port)
    [before] = [t for t in edge.tunnels() if t["local_port"] == port]
    frozen.send_signal(signal.SIGSTOP)
    try:
        fresh = ssh.start(forward_argv(edge, account, port, backend("fresh").port))
        wait_for_new_forward(edge, port, before["peer"])
        assert fresh.poll() is None, fresh.out_path.read_text()
        assert edge.get(sock["dnsname"]) == (200, "fresh /\n")
    finally:
        frozen.send_signal(signal.SIGCONT)


def test_another_account_never_takes_a_held_port(edge, account, new_account, ssh, backend):
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    owner = ssh.start(forward_argv(edge, account, port, backend("owner").port))
    edge.wait_forward(port)
    thief = new_account()
    result = ssh.run(forward_argv(edge, thief, port, backend("thief").port))
    assert result.returncode != 0
    assert b"remote port forwarding failed" in result.stderr
    assert owner.poll() is None
    assert edge.get(sock["dnsname"]) == (200, "owner /\n")


def test_wrong_key_and_wrong_user_are_refused(edge, account, new_account, ssh, backend):
    other = new_account()
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    # other's key for account's user name, and an unknown user name
    argv = edge.ssh_argv(other.key_path, account.user_name,
                         options=["-N", "-R", "{}:127.0.0.1:1".format(port)])
    result = ssh.run(argv)
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr
    result = ssh.run(edge.ssh_argv(account.key_path, "nosuchuser", options=["-N"]))
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr


@pytest.mark.parametrize("tty_flag", ["-tt", "-T"])
def test_session_without_dash_n_gets_a_banner_and_stays(edge, account, ssh, backend,
                                                        tty_flag):
    be = backend("shell")
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    proc = ssh.start(forward_argv(edge, account, port, be.port, extra=(tty_flag,)),
                     stdin=subprocess.PIPE)
    text = wait_for_text(proc.out_path, "Type ~. to disconnect")
    assert "This session serves:" in text
    assert "{}  (local_port {})".format(sock["dnsname"], port) in text
    proc.stdin.write(b"ls /\nexit\n\x03\x04")   # input is ignored, nothing runs
    proc.stdin.close()                            # and so is end-of-file
    time.sleep(0.5)
    assert proc.poll() is None, proc.out_path.read_text()
    assert edge.get(sock["dnsname"]) == (200, "shell /\n")
    assert "bin" not in proc.out_path.read_text()


def test_exec_is_refused(edge, account, ssh):
    result = ssh.run(edge.ssh_argv(account.key_path, account.user_name,
                                   command=["echo", "ran-it"]))
    assert result.returncode != 0
    assert b"ran-it" not in result.stdout


def test_two_tunnels_share_load_and_one_survives_the_other(edge, account, ssh, backend):
    sock = new_socket(edge, account)
    second = edge.api("POST", "/socket/{}/tunnel".format(sock["socket_id"]), {},
                      token=account.token)
    assert second.status == 200
    ports = [sock["tunnels"][0]["local_port"], second.body["local_port"]]
    b1, b2 = backend("one"), backend("two")
    proc1 = ssh.start(forward_argv(edge, account, ports[0], b1.port))
    ssh.start(forward_argv(edge, account, ports[1], b2.port))
    edge.wait_forward(ports[0])
    edge.wait_forward(ports[1])
    seen = set()
    for _ in range(20):
        status, body = edge.get(sock["dnsname"])
        assert status == 200
        seen.add(body.split()[0])
        if seen == {"one", "two"}:
            break
    assert seen == {"one", "two"}
    proc1.kill()
    proc1.wait(5)
    edge.wait_forward(ports[0], present=False)
    assert {edge.get(sock["dnsname"]) for _ in range(6)} == {(200, "two /\n")}


def test_front_answers_unknown_host_and_missing_tunnel(edge, account):
    status, body = edge.get("no-such-name.edge.localhost")
    assert status == 404 and "no socket named" in body
    sock = new_socket(edge, account)
    status, body = edge.get(sock["dnsname"])
    assert status == 502 and "no tunnel of this socket is connected" in body
    status, _, body = raw_get(edge, "")
    assert status == 400


def test_tunnel_whose_target_is_down_gives_502(edge, account, ssh):
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    with socket.socket() as s:           # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ssh.start(forward_argv(edge, account, port, dead))
    edge.wait_forward(port)
    status, body = edge.get(sock["dnsname"])
    assert status == 502 and "could not reach its target" in body


def test_protected_socket_needs_basic_auth(edge, account, ssh, backend):
    sock = new_socket(edge, account, protected_socket=True,
                      protected_username="alice", protected_password="s3cret")
    port = sock["tunnels"][0]["local_port"]
    ssh.start(forward_argv(edge, account, port, backend("private").port))
    edge.wait_forward(port)
    status, headers, _ = raw_get(edge, sock["dnsname"])
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    bad = {"Authorization": "Basic YWxpY2U6d3Jvbmc="}            # alice:wrong
    assert raw_get(edge, sock["dnsname"], bad)[0] == 401
    good = {"Authorization": "Basic YWxpY2U6czNjcmV0"}           # alice:s3cret
    for _ in range(2):   # second time from the verification cache
        assert edge.get(sock["dnsname"], headers=good) == (200, "private /\n")


def test_cloud_authentication_fails_closed(edge, account):
    """Without --oidc-issuer the edge refuses rather than serving such a socket unprotected."""
    sock = new_socket(edge, account, cloud_authentication_enabled=True)
    status, headers, body = raw_get(edge, sock["dnsname"])
    assert status == 403 and "no identity provider configured" in body
    assert headers["Mysocket-Edge"] == "forbidden"


def test_tcp_socket_gets_its_own_port(edge, account, ssh, backend):
    sock = new_socket(edge, account, socket_type="tcp")
    [public] = sock["socket_tcp_ports"]
    port = sock["tunnels"][0]["local_port"]
    assert edge.get(sock["dnsname"])[0] == 421
    proc = ssh.start(forward_argv(edge, account, port, backend("tcp").port))
    edge.wait_forward(port)
    for path in ("/a", "/b"):
        with socket.create_connection(("127.0.0.1", public), timeout=10) as conn:
            conn.sendall("GET {} HTTP/1.0\r\n\r\n".format(path).encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.0 200") and data.endswith(
            "tcp {}\n".format(path).encode())
    resp = edge.api("DELETE", "/socket/{}".format(sock["socket_id"]), token=account.token)
    assert resp.status == 204
    wait_exit(proc)   # ssh ends: its only forward is gone
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", public), timeout=5).close()


def test_deleting_a_socket_or_tunnel_disconnects_its_forward(edge, account, ssh, backend):
    be = backend()
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    proc = ssh.start(forward_argv(edge, account, port, be.port))
    edge.wait_forward(port)
    path = "/socket/{}/tunnel/{}".format(sock["socket_id"], sock["tunnels"][0]["tunnel_id"])
    assert edge.api("DELETE", path, token=account.token).status == 204
    wait_exit(proc)
    edge.wait_forward(port, present=False)
    assert edge.get(sock["dnsname"])[0] == 502
    # the port of a deleted tunnel is never accepted again
    assert ssh.run(forward_argv(edge, account, port, be.port)).returncode != 0


def test_admin_drop_ssh_ends_every_session(edge, account, ssh, backend):
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    proc = ssh.start(forward_argv(edge, account, port, backend().port))
    edge.wait_forward(port)
    resp = edge.api("POST", "/_admin/drop-ssh")
    assert resp.status == 200 and resp.body["dropped"] >= 1
    wait_exit(proc)
    edge.wait_forward(port, present=False)


def test_a_forward_the_edge_drops_ends_its_session_no_stale_binding(edge, account, ssh, backend):
    """The edge never leaves a session up whose forward it dropped (#26): ssh exits at once
    (and a client that reconnects is served again), instead of a stale binding that only a
    probe would notice."""
    sock = new_socket(edge, account)
    port = sock["tunnels"][0]["local_port"]
    other = new_socket(edge, account)["tunnels"][0]["local_port"]     # a second forward of the session
    be = backend()
    proc = ssh.start(edge.ssh_argv(account.key_path, account.user_name, options=[
        "-N", "-R", "{}:127.0.0.1:{}".format(port, be.port),
        "-R", "{}:127.0.0.1:{}".format(other, be.port)]))
    edge.wait_forward(port)
    assert edge.get(sock["dnsname"])[0] == 200
    assert edge.api("POST", "/_admin/forget-forward", {"local_port": port}).body == {"forgotten": 1}
    assert wait_exit(proc) is not None                 # the whole session ended, not only the forward
    edge.wait_forward(other, present=False)
    ssh.start(forward_argv(edge, account, port, be.port))
    edge.wait_forward(port)
    assert edge.get(sock["dnsname"])[0] == 200
    assert edge.api("POST", "/_admin/forget-forward", {"local_port": "x"}).status == 400
