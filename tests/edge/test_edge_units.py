"""Pure parts of the edge, table-tested without a process: flags, schema, names,
request-head parsing, port ranges, fault settings, passwords and tokens."""

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
from edge.front import basic_credentials, host_without_port, parse_head, plain_response
from edge.names import new_dnsname
from edge.tcpfront import PortRange

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXUWKPCNxCIlY0tKsHrXBRl/q48J+UOL81cOZRx71QJ c"


def test_flag_defaults_and_env_fallback():
    c = parse_args([], {})
    assert (c.api_port, c.ssh_port, c.http_port) == (8080, 2222, 8000)
    assert (c.domain, c.listen, c.token_lifetime) == ("edge.localhost", "127.0.0.1", 3600)
    assert c.data_dir == Path("edge-data") and c.tcp_ports == PortRange(20000, 20999)
    assert not c.admin and c.tunnel_server == "127.0.0.1" and c.faults == FaultSettings()
    env = {"EDGE_API_PORT": "0", "EDGE_ADMIN": "true", "EDGE_DOMAIN": "Edge.Example.",
           "EDGE_TCP_PORTS": "0", "EDGE_LISTEN": "0.0.0.0", "EDGE_FAULT_ERROR_RATE": "0.25"}
    c = parse_args(["--ssh-port", "0", "--api-port", "9"], env)
    assert (c.api_port, c.ssh_port, c.admin, c.domain) == (9, 0, True, "edge.example")
    assert c.tcp_ports.os_chooses and c.tunnel_server == "edge.example"
    assert c.faults.error_rate == 0.25


@pytest.mark.parametrize("argv", [
    ["--api-port", "70000"], ["--tcp-ports", "300-200"], ["--tcp-ports", "x"],
    ["--token-lifetime", "0"], ["--fault-error-rate", "0.5"],
    ["--admin", "--fault-error-rate", "1.5"], ["--admin", "--fault-status", "200"],
    ["--log-level", "LOUD"],
])
def test_bad_flags_are_usage_errors(argv):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, {})
    assert exc.value.code == 2


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
])
def test_new_socket_refuses(body, message):
    with pytest.raises(schema.BadInput, match=message):
        schema.new_socket(body)


def test_new_socket_defaults_and_nulls():
    sock = schema.new_socket({"name": None, "protected_username": None,
                              "protected_password": "ignored", "socket_type": None})
    assert sock == schema.NewSocket(protected_password="")


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


def test_parse_head():
    head = parse_head(b"GET /x HTTP/1.1\r\nHost: Foo.Edge.Localhost:8000\r\n"
                      b"X-A: 1\r\nx-a: 2\r\n\r\n")
    assert (head.method, head.target, head.host) == ("GET", "/x", "foo.edge.localhost")
    assert head.headers["x-a"] == "1"
    for bad in (b"GET /x\r\n\r\n", b"GET /x SPDY/3\r\n\r\n",
                b"GET / HTTP/1.1\r\nno-colon\r\n\r\n", b"GET / HTTP/1.1\r\n bad: x\r\n\r\n"):
        assert parse_head(bad) is None
    assert parse_head(b"GET / HTTP/1.1\r\n\r\n").host is None


@pytest.mark.parametrize("host,expected", [
    ("a.b", "a.b"), ("A.B:80", "a.b"), ("a.b.", "a.b"), ("[::1]:80", "::1"),
    ("::1", "::1"), ("", None), ("[", None),
])
def test_host_without_port(host, expected):
    assert host_without_port(host) == expected


@pytest.mark.parametrize("header,expected", [
    ("Basic YWxpY2U6czNjcmV0", ("alice", "s3cret")),
    ("basic YWxpY2U6YTpi", ("alice", "a:b")),
    ("Bearer xyz", None), ("Basic !!!", None), ("Basic YWxpY2U=", None), ("", None),
])
def test_basic_credentials(header, expected):
    assert basic_credentials(header) == expected


def test_plain_response_is_complete_http():
    raw = plain_response(401, "nope", ("WWW-Authenticate: Basic",))
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"Content-Length: 5" in head and b"Connection: close" in head
    assert b"WWW-Authenticate: Basic" in head and body == b"nope\n"


def test_fault_settings():
    assert FaultSettings.from_json({}) == FaultSettings()
    s = FaultSettings.from_json({"error_rate": 0.3, "status": 429, "retry_after": 2})
    assert (s.error_rate, s.status, s.retry_after) == (0.3, 429, 2)
    for bad in ({"error_rate": -1}, {"status": 600}, {"status": 500.0}, {"latency": "1"},
                {"timeout_rate": True}, {"nope": 1}):
        with pytest.raises(ValueError):
            FaultSettings.from_json(bad)


def test_passwords_are_salted_scrypt():
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second and first.startswith("scrypt$") and "pw" not in first
    assert verify_password("pw", first) and not verify_password("px", first)
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
