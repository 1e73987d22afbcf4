"""Pure parts of the edge, table-tested without a process: flags, schema, names,
port ranges, fault settings, passwords and tokens."""

import random
import re
import time
from pathlib import Path

import jwt
import pytest

from edge import schema
from edge.auth import TokenIssuer, hash_password, verify_password
from edge.config import parse_args
from edge.faults import FaultSettings
from edge.names import new_dnsname
from edge.tcpports import PortRange

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXUWKPCNxCIlY0tKsHrXBRl/q48J+UOL81cOZRx71QJ c"


def test_flag_defaults_and_env_fallback():
    c = parse_args([], {})
    assert (c.api_port, c.ssh_port, c.http_port) == (8080, 2222, 8000)
    assert (c.domain, c.listen, c.token_lifetime) == ("edge.localhost", "127.0.0.1", 3600)
    assert c.data_dir == Path("edge-data") and c.tcp_ports == PortRange(20000, 20999)
    assert not c.admin and c.tunnel_server == "127.0.0.1" and c.faults == FaultSettings()
    env = {"EDGE_API_PORT": "0", "EDGE_DOMAIN": "Edge.Example.",
           "EDGE_TCP_PORTS": "0", "EDGE_LISTEN": "0.0.0.0"}
    c = parse_args(["--ssh-port", "0", "--api-port", "9"], env)
    assert (c.api_port, c.ssh_port, c.admin, c.domain) == (9, 0, False, "edge.example")
    assert c.tcp_ports.os_chooses and c.tunnel_server == "edge.example"
    c = parse_args([], {"EDGE_ADMIN": "true", "EDGE_FAULT_ERROR_RATE": "0.25"})
    assert c.admin and c.faults.error_rate == 0.25


@pytest.mark.parametrize("argv", [
    ["--api-port", "70000"], ["--tcp-ports", "300-200"], ["--tcp-ports", "x"],
    ["--token-lifetime", "0"], ["--fault-error-rate", "0.5"],
    ["--admin", "--fault-error-rate", "1.5"], ["--admin", "--fault-status", "200"],
    ["--log-level", "LOUD"],
    ["--visitor-share", "1.5"], ["--body-read-timeout", "-1"], ["--conns-per-visitor", "x"],
    # unauthenticated /_admin/ routes only on an edge that listens on loopback alone
    ["--admin", "--listen", "0.0.0.0"], ["--admin", "--api-listen", "0.0.0.0"],
    ["--admin", "--listen", "192.0.2.1", "--api-listen", "127.0.0.1"],
    ["--metrics-listen", "9464"], ["--metrics-listen", "127.0.0.1:"], ["--metrics-listen", ":9464"],
    ["--metrics-listen", "127.0.0.1:99999"], ["--metrics-listen", "127.0.0.1:x"],
])
def test_bad_flags_are_usage_errors(argv):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, {})
    assert exc.value.code == 2


@pytest.mark.parametrize("argv,env,expected", [
    ([], {}, ""),                                   # off by default
    (["--metrics-listen", "127.0.0.1:9464"], {}, "127.0.0.1:9464"),
    ([], {"EDGE_METRICS_LISTEN": "[::1]:0"}, "[::1]:0"),
])
def test_metrics_listen(argv, env, expected):
    assert parse_args(argv, env).metrics_listen == expected


@pytest.mark.parametrize("text,expected", [
    ("0", PortRange(0, 0)), ("20000-20999", PortRange(20000, 20999)),
    ("5000", PortRange(5000, 5000)),
])
def test_port_range(text, expected):
    assert PortRange.parse(text) == expected


def test_new_user_and_login_fields():
    body = {"name": "N", "email": " A@B.io ", "password": "p", "sshkey": KEY + "\n"}
    user = schema.new_user(body, lambda line: line == KEY)
    assert (user.email, user.sshkey) == ("a@b.io", KEY)
    assert schema.login({"email": "a@b.io", "password": "p"}) == ("a@b.io", "p")
    with pytest.raises(schema.BadInput, match="sshkey"):
        schema.new_user(body, lambda line: False)


@pytest.mark.parametrize("body,message", [
    ({"socket_type": "ftp"}, "socket_type"),
    ({"protected_socket": 1}, "protected_socket"),
    ({"protected_socket": True, "protected_username": "u"}, "protected_password"),
    ({"name": "x" * 300}, "too long"),
    ({"cloud_authentication_email_allowed_domains": ["a"] * 101}, "too long"),
    ({"upstream_protocol": "h2"}, "upstream_protocol must be one of http/1.1, h2c"),
    ({"upstream_protocol": 2}, "upstream_protocol must be a string"),
])
def test_new_socket_refuses(body, message):
    with pytest.raises(schema.BadInput, match=message):
        schema.new_socket(body)


def test_new_socket_defaults_and_nulls():
    sock = schema.new_socket({"name": None, "protected_username": None,
                              "protected_password": "ignored", "socket_type": None})
    assert sock == schema.NewSocket(protected_password="")
    assert sock.upstream_protocol == "http/1.1"         # absent: what every old client means
    assert schema.new_socket({"upstream_protocol": "h2c"}).upstream_protocol == "h2c"


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff", b"[" * 100000])
def test_json_object_refuses(raw):
    with pytest.raises(schema.BadInput):
        schema.json_object(raw)


def test_dnsnames_are_unique_and_well_formed():
    rng = random.Random(1)
    taken = set()
    for _ in range(300):
        name = new_dnsname("edge.localhost", taken.__contains__, rng)
        assert re.fullmatch(r"[a-z]+-[a-z]+-\d{4}\.edge\.localhost", name)
        assert name not in taken
        taken.add(name)
    with pytest.raises(RuntimeError):
        new_dnsname("d", lambda name: True, rng)


def test_fault_settings():
    assert FaultSettings.from_json({}) == FaultSettings()
    s = FaultSettings.from_json({"error_rate": 0.3, "status": 429, "retry_after": 2})
    assert (s.error_rate, s.status, s.retry_after) == (0.3, 429, 2)
    for bad in ({"error_rate": -1}, {"status": 600}, {"status": 500.0}, {"latency": "1"},
                {"timeout_rate": True}, {"nope": 1}):
        with pytest.raises(ValueError):
            FaultSettings.from_json(bad)


def test_passwords_are_salted_scrypt():
    # "pw" alone would be found in the base64 of about one hash in fifty: a password with
    # characters base64 never uses cannot be.
    first, second = hash_password("p-w!"), hash_password("p-w!")
    assert first != second and first.startswith("scrypt$") and "p-w!" not in first
    assert verify_password("p-w!", first) and not verify_password("p-w?", first)
    assert not verify_password("pw", "garbage") and not verify_password("pw", "md5$x")


def test_tokens():
    issuer = TokenIssuer(b"k" * 32, lifetime=60)
    token = issuer.issue("u-1")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["user_id"] == "u-1" and 0 < claims["exp"] - time.time() <= 60
    assert issuer.user_id(token) == "u-1"
    assert TokenIssuer(b"x" * 32, 60).user_id(token) is None
    assert issuer.user_id(jwt.encode({"user_id": "u", "exp": 1}, b"k" * 32, "HS256")) is None
    assert issuer.user_id("garbage") is None


def test_host_key_is_created_0600_from_the_start(tmp_path, monkeypatch):
    """Never a moment with wider permissions: no chmod after the fact, whatever the umask."""
    import os
    import stat

    from edge import hostkey

    def no_chmod(*a, **k):
        raise AssertionError("the host key must be created 0600, not chmod'ed afterwards")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old = os.umask(0)
    try:
        path = hostkey.load_or_create_host_key(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pub = (tmp_path / (path.name + ".pub")).read_text()
    assert hostkey.parse_public_key(pub) is not None
    assert hostkey.fingerprint(pub).startswith("SHA256:")
    assert hostkey.load_or_create_host_key(tmp_path) == path      # the second start reuses it


def test_rate_limiter_refills_and_reports_retry_after():
    from edge.policy import RateLimiter
    now = [0.0]
    rl = RateLimiter(capacity=2, period=60, clock=lambda: now[0])
    assert rl.retry_after("a") is None
    rl.spend("a")
    rl.spend("a")
    assert rl.retry_after("a") == 30 and rl.retry_after("b") is None
    now[0] = 30.0
    assert rl.retry_after("a") is None
    assert RateLimiter(capacity=0, period=60).retry_after("x") is None   # 0 = no limit


def test_plain_api_stays_on_loopback_when_the_edge_listens_publicly():
    assert parse_args([], {}).api_listen == "127.0.0.1"
    assert parse_args(["--listen", "::1"], {}).api_listen == "::1"
    assert parse_args(["--listen", "0.0.0.0"], {}).api_listen == "127.0.0.1"
    assert parse_args(["--listen", "0.0.0.0", "--api-listen", "0.0.0.0"], {}).api_listen == "0.0.0.0"


def test_registration_is_closed_by_default_on_a_public_listener(tmp_path):
    assert parse_args([], {}).registration == "open"                       # 127.0.0.1
    assert parse_args(["--listen", "0.0.0.0"], {}).registration == "closed"
    assert parse_args(["--listen", "0.0.0.0", "--registration", "open"], {}).registration == "open"
    with pytest.raises(SystemExit):
        parse_args(["--registration", "invite"], {})                       # needs the file
    tokens = tmp_path / "t"
    tokens.write_text("a\n\nb\n")
    c = parse_args(["--registration", "invite", "--invite-tokens-file", str(tokens)], {})
    assert c.invite_tokens == frozenset({"a", "b"})
    with pytest.raises(SystemExit):
        parse_args(["--tls-cert", "x.pem"], {})                            # without --tls-key


def test_the_data_planes_bounds_are_flags_handed_to_it():
    args = parse_args([], {}).plane_args
    pairs = dict(zip(args[::2], args[1::2]))
    assert pairs["--head-timeout"] == "10.0s" and pairs["--body-read-timeout"] == "15.0s"
    assert pairs["--response-header-timeout"] == "100.0s" and pairs["--visitor-share"] == "0.05"
    assert pairs["--conns-per-visitor"] == "256" and pairs["--auth-check-memory"] == "128"
    assert pairs["--h2-max-streams"] == "100"
    args = parse_args(["--upgrade-idle-timeout", "0", "--ssh-preauth-per-address", "8"],
                      {"EDGE_SPLICE_IDLE_TIMEOUT": "30"}).plane_args
    pairs = dict(zip(args[::2], args[1::2]))
    assert (pairs["--upgrade-idle-timeout"], pairs["--splice-idle-timeout"]) == ("0.0s", "30.0s")
    assert pairs["--ssh-preauth-per-address"] == "8"
