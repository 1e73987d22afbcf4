"""The edge as a process: restart keeps state, SIGTERM, token expiry, flags, admin off."""

import re
import socket
import subprocess
import sys
import time

import jwt
import pytest

from edge.testing import REPO_ROOT, EdgeProcess
from edgetest_helpers import SshClients, forward_argv, make_account, new_socket

pytestmark = pytest.mark.timeout(60)


def tcp_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall("GET {} HTTP/1.0\r\n\r\n".format(path).encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def fingerprints(edge: EdgeProcess) -> list:
    return re.findall(r"SSH host key fingerprint (SHA256:\S+)", edge.log_tail(10000))


def test_restart_keeps_everything_and_clients_reconnect(tmp_path, backend):
    ssh = SshClients(tmp_path)
    be = backend("kept")
    with EdgeProcess(tmp_path / "e", admin=True) as edge:
        try:
            acct = make_account(edge, tmp_path)
            web, tcp = new_socket(edge, acct), new_socket(edge, acct, socket_type="tcp")
            ports = {"web": web["tunnels"][0]["local_port"],
                     "tcp": tcp["tunnels"][0]["local_port"]}
            procs = [ssh.start(forward_argv(edge, acct, p, be.port)) for p in ports.values()]
            for p in ports.values():
                edge.wait_forward(p)
            assert edge.get(web["dnsname"], "/1") == (200, "kept /1\n")
            addresses = (edge.api_port, edge.ssh_port, edge.http_port)

            edge.restart()

            assert (edge.api_port, edge.ssh_port, edge.http_port) == addresses
            for proc in procs:
                proc.wait(10)           # the edge went away, so did the sessions
            assert edge.get(web["dnsname"])[0] == 502
            # the old token is still valid: the signing secret survived
            listed = edge.api("GET", "/connect", token=acct.token)
            assert listed.status == 200
            assert {s["socket_id"]: s for s in listed.body} == {
                web["socket_id"]: web, tcp["socket_id"]: tcp}
            assert edge.login(acct.email, acct.password)
            # same host key: the known_hosts entry from before still verifies
            prints = fingerprints(edge)
            assert len(prints) == 2 and prints[0] == prints[1]
            for p in ports.values():
                ssh.start(forward_argv(edge, acct, p, be.port))
                edge.wait_forward(p)
            assert edge.get(web["dnsname"], "/2") == (200, "kept /2\n")
            assert tcp_get(tcp["socket_tcp_ports"][0], "/3").endswith(b"kept /3\n")
        finally:
            ssh.stop_all()


def test_sigterm_stops_promptly_with_status_0(tmp_path, backend):
    ssh = SshClients(tmp_path)
    edge = EdgeProcess(tmp_path / "e", admin=True, stop_timeout=5)
    with edge:
        try:
            acct = make_account(edge, tmp_path)
            sock = new_socket(edge, acct)
            port = sock["tunnels"][0]["local_port"]
            ssh.start(forward_argv(edge, acct, port, backend().port))
            edge.wait_forward(port)
            idle = socket.create_connection((edge.host, edge.http_port))  # never sends
            try:
                # SIGKILL after the deadline would show as -9, not 0
                assert edge.stop() == 0
            finally:
                idle.close()
            assert "stopped" in edge.log_tail(5)
        finally:
            ssh.stop_all()


def test_token_expires_and_admin_is_absent_without_flag(tmp_path):
    with EdgeProcess(tmp_path / "e", token_lifetime=2) as edge:
        acct = make_account(edge, tmp_path)
        assert edge.api("GET", "/connect", token=acct.token).status == 200
        exp = jwt.decode(acct.token, options={"verify_signature": False})["exp"]
        assert exp - time.time() <= 2
        time.sleep(max(0.0, exp - time.time()) + 1.1)
        resp = edge.api("GET", "/connect", token=acct.token)
        assert resp.status == 401 and resp.body["error_message"]
        assert edge.api("GET", "/connect", token=edge.login(acct.email, acct.password)
                        ).status == 200
        for method, path in (("POST", "/_admin/faults"), ("GET", "/_admin/faults"),
                             ("POST", "/_admin/drop-ssh"), ("GET", "/_admin/tunnels"),
                             ("POST", "/_admin/forget-forward")):
            resp = edge.api(method, path, {"error_rate": 1.0} if method == "POST" else None)
            assert resp.status == 404 and resp.body["error_message"], (method, path)
        assert edge.api("GET", "/connect", token=edge.login(acct.email, acct.password)
                        ).status == 200


def run_edge(args: list, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "--data-dir", str(tmp_path / "d"),
                           *args], cwd=str(REPO_ROOT), capture_output=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def test_bad_flag_exits_2(tmp_path):
    result = run_edge(["--fault-error-rate", "0.5"], tmp_path)   # fault flags need --admin
    assert result.returncode == 2, result.stderr
    assert b"usage:" in result.stderr and b"--admin" in result.stderr


def test_taken_port_exits_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_edge(["--api-port", "0", "--ssh-port", "0", "--http-port", str(port)],
                          tmp_path)
    assert result.returncode == 1
    assert b"cannot start the edge" in result.stderr
    assert b"EDGE READY" not in result.stdout


def test_a_dead_data_plane_is_started_again_with_the_same_state(tmp_path, backend):
    """SIGKILL of the Go data plane: the Python edge starts it again on the same
    ports with the whole state, and a client that reconnects is served."""
    import os
    import signal as signals

    import psutil

    ssh = SshClients(tmp_path)
    be = backend("again")
    with EdgeProcess(tmp_path / "e", admin=True) as edge:
        try:
            acct = make_account(edge, tmp_path)
            sock = new_socket(edge, acct)
            port = sock["tunnels"][0]["local_port"]
            first = ssh.start(forward_argv(edge, acct, port, be.port))
            edge.wait_forward(port)
            [plane] = psutil.Process(edge.pid).children()
            os.kill(plane.pid, signals.SIGKILL)
            first.wait(15)                       # its SSH session went with the data plane
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "the data plane is back" not in edge.log_tail(50):
                time.sleep(0.1)
            assert "exited unexpectedly" in edge.log_tail(50)
            assert "the data plane is back" in edge.log_tail(50)
            [again] = psutil.Process(edge.pid).children()
            assert again.pid != plane.pid
            ssh.start(forward_argv(edge, acct, port, be.port))   # same ports, same accounts
            edge.wait_forward(port)
            assert edge.get(sock["dnsname"], "/x") == (200, "again /x\n")
        finally:
            ssh.stop_all()
