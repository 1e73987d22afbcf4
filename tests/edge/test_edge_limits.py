"""Limits that keep the edge up: port quarantine, quotas, rate limits, registration policy."""

import http.client

import pytest

from edge.testing import EdgeProcess, ssh_keygen
from edgetest_helpers import SshClients, forward_argv, make_account, new_socket

pytestmark = pytest.mark.timeout(120)


def limited_edge(tmp_path, name="e", **limits):
    """An edge with these limits (every other limit as EdgeProcess sets it)."""
    extra = []
    for key in ("local_ports", "registration", "invite_tokens_file"):
        if key in limits:
            extra += ["--" + key.replace("_", "-"), str(limits.pop(key))]
    base = {"registrations_per_hour_per_address": 0, "logins_per_minute_per_address": 0}
    return EdgeProcess(tmp_path / name, admin=True, limits={**base, **limits},
                       extra_args=tuple(extra))


def churn(edge, acct, cycles: int) -> list:
    """Create and delete a socket (with its tunnel) until refused; the answers."""
    answers = []
    for _ in range(cycles):
        resp = edge.api("POST", "/connect", {"name": "churn"}, token=acct.token)
        answers.append(resp)
        if resp.status != 200:
            break
        assert edge.api("DELETE", "/socket/" + resp.body["socket_id"],
                        token=acct.token).status == 204
    return answers


def test_churn_far_past_the_port_range_is_refused_to_the_churner_only(tmp_path):
    with limited_edge(tmp_path, local_ports="10000-10049", tunnel_creates_per_hour=30,
                      port_quarantine=3600) as edge:
        churner, other = make_account(edge, tmp_path), make_account(edge, tmp_path)
        answers = churn(edge, churner, 200)       # 4x the range of 50 ports
        assert [a.status for a in answers[:-1]] == [200] * 30
        refused = answers[-1]
        assert refused.status == 429
        assert "tunnel creation quota" in refused.body["error_message"]
        assert refused.headers.get("retry-after")
        for _ in range(5):                        # everybody else still creates sockets
            assert new_socket(edge, other)["tunnels"][0]["local_port"] >= 10000


def test_ports_come_back_only_after_the_quarantine(tmp_path):
    with limited_edge(tmp_path, "held", local_ports="10000-10004",
                      port_quarantine=3600) as edge:
        acct = make_account(edge, tmp_path)
        answers = churn(edge, acct, 10)
        assert [a.status for a in answers] == [200] * 5 + [503]
        assert "no free local_port" in answers[-1].body["error_message"]
    with limited_edge(tmp_path, "reused", local_ports="10000-10004",
                      port_quarantine=0) as edge:
        acct = make_account(edge, tmp_path)
        answers = churn(edge, acct, 12)
        assert all(a.status == 200 for a in answers)
        ports = [a.body["tunnels"][0]["local_port"] for a in answers]
        assert set(ports) == set(range(10000, 10005))


def test_socket_and_tunnel_quotas_refuse_with_a_clear_message(tmp_path):
    with limited_edge(tmp_path, sockets_per_account=2, tunnels_per_account=3) as edge:
        acct = make_account(edge, tmp_path)
        first = new_socket(edge, acct)
        new_socket(edge, acct)
        resp = edge.api("POST", "/connect", {"name": "third"}, token=acct.token)
        assert resp.status == 403 and "socket quota" in resp.body["error_message"]
        path = "/socket/{}/tunnel".format(first["socket_id"])
        assert edge.api("POST", path, {}, token=acct.token).status == 200
        resp = edge.api("POST", path, {}, token=acct.token)
        assert resp.status == 403 and "tunnel quota" in resp.body["error_message"]
        other = make_account(edge, tmp_path)      # a quota is per account
        assert new_socket(edge, other)


def test_login_failures_are_rate_limited_per_account_and_address(tmp_path):
    with limited_edge(tmp_path, login_failures_per_minute=3,
                      logins_per_minute_per_address=8) as edge:
        acct, other = make_account(edge, tmp_path), make_account(edge, tmp_path)
        wrong = {"email": acct.email, "password": "wrong"}
        assert [edge.api("POST", "/login", wrong).status for _ in range(3)] == [401] * 3
        resp = edge.api("POST", "/login", {"email": acct.email, "password": acct.password})
        assert resp.status == 429 and "failed logins" in resp.body["error_message"]
        assert int(resp.headers["retry-after"]) > 0
        assert edge.login(other.email, other.password)           # another account: fine
        statuses = [edge.api("POST", "/login", {"email": other.email, "password": "x"}).status
                    for _ in range(4)]
        assert statuses[-1] == 429                   # the address ran out of attempts


def test_registration_policy_and_rate(tmp_path):
    key = ssh_keygen(tmp_path / "k")
    user = {"name": "n", "password": "pw", "sshkey": key}
    with limited_edge(tmp_path, "closed", registration="closed") as edge:
        resp = edge.api("POST", "/user", dict(user, email="a@example.com"))
        assert resp.status == 403 and "registration is closed" in resp.body["error_message"]
    tokens = tmp_path / "invites"
    tokens.write_text("letmein\n")
    with limited_edge(tmp_path, "invite", registration="invite",
                      invite_tokens_file=tokens) as edge:
        resp = edge.api("POST", "/user", dict(user, email="b@example.com"))
        assert resp.status == 403 and "invite_token" in resp.body["error_message"]
        resp = edge.api("POST", "/user", dict(user, email="b@example.com",
                                              invite_token="letmein"))
        assert resp.status == 200
    with limited_edge(tmp_path, "rate", registrations_per_hour_per_address=2) as edge:
        statuses = [edge.api("POST", "/user", dict(user, email="c{}@example.com".format(i))
                             ).status for i in range(3)]
        assert statuses == [200, 200, 429]


def test_basic_auth_failures_are_rate_limited(tmp_path, backend):
    ssh = SshClients(tmp_path)
    with limited_edge(tmp_path, auth_failures_per_minute=3) as edge:
        try:
            acct = make_account(edge, tmp_path)
            sock = new_socket(edge, acct, protected_socket=True,
                              protected_username="alice", protected_password="s3cret")
            port = sock["tunnels"][0]["local_port"]
            ssh.start(forward_argv(edge, acct, port, backend("private").port))
            edge.wait_forward(port)
            bad = {"Authorization": "Basic YWxpY2U6d3Jvbmc="}      # alice:wrong
            good = {"Authorization": "Basic YWxpY2U6czNjcmV0"}     # alice:s3cret
            assert [get(edge, sock["dnsname"], bad)[:2] for _ in range(3)] == \
                [(401, "unauthorized")] * 3
            status, reason, _ = get(edge, sock["dnsname"], good)
            assert (status, reason) == (429, "rate-limited")
        finally:
            ssh.stop_all()


def test_session_quota_per_account(tmp_path, backend):
    ssh = SshClients(tmp_path)
    with limited_edge(tmp_path, sessions_per_account=1) as edge:
        try:
            acct = make_account(edge, tmp_path)
            first, second = new_socket(edge, acct), new_socket(edge, acct)
            p1, p2 = first["tunnels"][0]["local_port"], second["tunnels"][0]["local_port"]
            one = ssh.start(forward_argv(edge, acct, p1, backend().port))
            edge.wait_forward(p1)
            result = ssh.run(forward_argv(edge, acct, p2, backend().port))
            assert result.returncode != 0
            assert "too many sessions for this account" in edge.log_tail(50)
            assert one.poll() is None
        finally:
            ssh.stop_all()


def get(edge, host, headers):
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host, **headers})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Mysocket-Edge"), resp.read().decode()
    finally:
        conn.close()
