"""The edge's REST API against the contract: happy paths, every bad input, faults."""

import json
import re
import sqlite3
import time
import uuid

import jwt
import pytest

from edgetest_helpers import make_account, new_socket

pytestmark = pytest.mark.timeout(60)

SOCKET_FIELDS = {
    "socket_id", "name", "dnsname", "socket_type", "socket_tcp_ports", "protected_socket",
    "protected_username", "cloud_authentication_enabled",
    "cloud_authentication_email_allowed_addressses",
    "cloud_authentication_email_allowed_domains", "user_name", "tunnels",
    "routes_digest", "address", "upstream_protocol", "hostnames"}      # additions: edge/README.md
# additions: edge/README.md
TUNNEL_FIELDS = {"tunnel_id", "local_port", "tunnel_server", "owner", "connected", "backend"}
USER_FIELDS = {"name", "email", "user_id", "user_name", "sshkey"}


def test_register_login_and_read_user(edge, account):
    assert set(account.user) == USER_FIELDS
    assert account.user["user_name"] == account.user["user_id"].replace("-", "")
    assert str(uuid.UUID(account.user["user_id"])) == account.user["user_id"]
    assert account.user["sshkey"] == account.pubkey
    claims = jwt.decode(account.token, options={"verify_signature": False})
    assert claims["user_id"] == account.user["user_id"]
    assert 3500 < claims["exp"] - time.time() <= 3600
    resp = edge.api("GET", "/user/" + account.user["user_id"], token=account.token)
    assert (resp.status, resp.body) == (200, account.user)
    assert edge.login(account.email.upper(), account.password)   # emails are case-blind


def test_socket_and_tunnel_lifecycle(edge, account):
    created = edge.api("POST", "/socket", {
        "name": "web", "protected_socket": False, "protected_username": "",
        "protected_password": "", "socket_type": "http",
        "cloud_authentication_enabled": False,
        "cloud_authentication_email_allowed_addressses": ["a@b.c"],
        "cloud_authentication_email_allowed_domains": ["b.c"]}, token=account.token)
    assert created.status == 200
    sock = created.body
    assert set(sock) == SOCKET_FIELDS
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{4}\.edge\.localhost", sock["dnsname"])
    assert sock["tunnels"] == [] and sock["socket_tcp_ports"] == [80, 443]
    assert sock["user_name"] == account.user_name
    assert sock["cloud_authentication_email_allowed_addressses"] == ["a@b.c"]
    base = "/socket/{}".format(sock["socket_id"])
    tunnels = [edge.api("POST", base + "/tunnel", {}, token=account.token).body
               for _ in range(2)]
    assert all(set(t) == TUNNEL_FIELDS for t in tunnels)
    assert tunnels[0]["local_port"] != tunnels[1]["local_port"]
    assert tunnels[0]["tunnel_server"] == "127.0.0.1"
    listed = edge.api("GET", base + "/tunnel", token=account.token).body
    assert sorted(t["tunnel_id"] for t in listed) == sorted(t["tunnel_id"] for t in tunnels)
    one = base + "/tunnel/" + tunnels[0]["tunnel_id"]
    assert edge.api("GET", one, token=account.token).body == tunnels[0]
    assert edge.api("DELETE", one, token=account.token).status == 204
    assert edge.api("GET", one, token=account.token).status == 404
    assert len(edge.api("GET", base, token=account.token).body["tunnels"]) == 1
    assert edge.api("DELETE", base, token=account.token).status == 204
    assert edge.api("GET", base, token=account.token).status == 404
    connect = edge.api("GET", "/connect", token=account.token).body
    assert sock["socket_id"] not in [s["socket_id"] for s in connect]
    fresh = new_socket(edge, account)        # POST /connect: a socket with one tunnel
    assert set(fresh) == SOCKET_FIELDS and len(fresh["tunnels"]) == 1
    assert fresh["tunnels"][0]["local_port"] > max(t["local_port"] for t in tunnels)


def test_protected_password_is_never_returned_or_stored_plain(edge, account):
    secret = "pw-" + uuid.uuid4().hex
    sock = new_socket(edge, account, protected_socket=True, protected_username="bob",
                      protected_password=secret)
    assert sock["protected_socket"] is True and sock["protected_username"] == "bob"
    answers = [sock, edge.api("GET", "/socket/" + sock["socket_id"], token=account.token).body,
               edge.api("GET", "/connect", token=account.token).body]
    assert all(secret not in json.dumps(a) for a in answers)
    assert secret not in (edge.data_dir / "edge.sqlite3").read_bytes().decode("latin-1")
    log = edge.log_tail(100000)
    assert account.password not in log and account.token not in log and secret not in log


# -- bad input: table-driven ----------------------------------------------------

@pytest.fixture(scope="module")
def world(edge, tmp_path_factory):
    """Two accounts, each with a socket and a tunnel."""
    workdir = tmp_path_factory.mktemp("world")
    a, b = make_account(edge, workdir), make_account(edge, workdir)
    sa, sb = new_socket(edge, a), new_socket(edge, b)
    secret = (edge.data_dir / "jwt-secret").read_text().strip()
    future, past = int(time.time()) + 3600, int(time.time()) - 10
    tokens = {
        "a": a.token, "none": None, "garbage": "not-a-jwt",
        "forged": jwt.encode({"user_id": a.user["user_id"], "exp": future},
                             "another-secret-that-is-32-bytes-long", algorithm="HS256"),
        "expired": jwt.encode({"user_id": a.user["user_id"], "exp": past},
                              secret, algorithm="HS256"),
        "alg-none": jwt.encode({"user_id": a.user["user_id"], "exp": future},
                               None, algorithm="none"),
        "no-user": jwt.encode({"user_id": str(uuid.uuid4()), "exp": future},
                              secret, algorithm="HS256"),
        "no-exp": jwt.encode({"user_id": a.user["user_id"]}, secret, algorithm="HS256"),
    }
    ids = {"A": a.user["user_id"], "B": b.user["user_id"], "SA": sa["socket_id"],
           "SB": sb["socket_id"], "TA": sa["tunnels"][0]["tunnel_id"],
           "TB": sb["tunnels"][0]["tunnel_id"], "AMAIL": a.email, "APW": a.password,
           "KEY": a.pubkey, "NEW": str(uuid.uuid4())}
    return {"tokens": tokens, "ids": ids, "accounts": (a, b)}


def snapshot(edge, world) -> tuple:
    db = sqlite3.connect("file:{}?mode=ro".format(edge.data_dir / "edge.sqlite3"), uri=True)
    try:
        rows = tuple(tuple(sorted(map(tuple, db.execute("SELECT * FROM " + t))))
                     for t in ("users", "sockets", "tunnels", "meta"))
    finally:
        db.close()
    views = tuple(json.dumps(edge.api("GET", "/connect", token=acct.token).body,
                             sort_keys=True) for acct in world["accounts"])
    return rows, views, json.dumps(edge.api("GET", "/_admin/faults").body)


def user_body(**overrides):
    body = {"name": "N", "email": "new-{}@example.com".format(uuid.uuid4().hex),
            "password": "pw", "sshkey": "{KEY}"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


BAD = [
    # (method, path, body, token, status)
    ("POST", "/user", b"{not json", None, 400),
    ("POST", "/user", b"[1, 2]", None, 400),
    ("POST", "/user", b"", None, 400),
    ("POST", "/user", {}, None, 400),
    ("POST", "/user", user_body(sshkey=...), None, 400),
    ("POST", "/user", user_body(name=5), None, 400),
    ("POST", "/user", user_body(email="no-at-sign"), None, 400),
    ("POST", "/user", user_body(email=["x@y.z"]), None, 400),
    ("POST", "/user", user_body(password=""), None, 400),
    ("POST", "/user", user_body(sshkey="ssh-ed25519 AAAAnotakey"), None, 400),
    ("POST", "/user", user_body(sshkey="{KEY}\n{KEY}"), None, 400),
    ("POST", "/user", user_body(email="{AMAIL}"), None, 409),
    ("POST", "/login", b"{", None, 400),
    ("POST", "/login", {"email": "{AMAIL}"}, None, 400),
    ("POST", "/login", {"email": "{AMAIL}", "password": 123}, None, 400),
    ("POST", "/login", {"email": "{AMAIL}", "password": "wrong"}, None, 401),
    ("POST", "/login", {"email": "nobody@example.com", "password": "{APW}"}, None, 401),
    ("GET", "/user/{A}", None, "none", 401),
    ("GET", "/user/{A}", None, "garbage", 401),
    ("GET", "/user/{A}", None, "forged", 401),
    ("GET", "/user/{A}", None, "expired", 401),
    ("GET", "/user/{A}", None, "alg-none", 401),
    ("GET", "/user/{A}", None, "no-user", 401),
    ("GET", "/user/{A}", None, "no-exp", 401),
    ("GET", "/user/{B}", None, "a", 404),
    ("GET", "/connect", None, "none", 401),
    ("GET", "/connect", None, "expired", 401),
    ("POST", "/connect", {"name": "x"}, "forged", 401),
    ("POST", "/connect", b"{bad", "a", 400),
    ("POST", "/connect", b"\"a string\"", "a", 400),
    ("POST", "/connect", {"socket_type": "ftp"}, "a", 400),
    ("POST", "/connect", {"socket_type": 5}, "a", 400),
    ("POST", "/connect", {"name": 5}, "a", 400),
    ("POST", "/connect", {"protected_socket": "yes"}, "a", 400),
    ("POST", "/connect", {"protected_socket": True, "protected_username": "u"}, "a", 400),
    ("POST", "/connect", {"protected_socket": True, "protected_username": "a:b",
                          "protected_password": "p"}, "a", 400),
    ("POST", "/connect", {"cloud_authentication_enabled": 1}, "a", 400),
    ("POST", "/connect", {"cloud_authentication_email_allowed_addressses": "a@b.c"},
     "a", 400),
    ("POST", "/connect", {"cloud_authentication_email_allowed_domains": [1]}, "a", 400),
    ("POST", "/socket", {"socket_type": "tcp", "name": ["x"]}, "a", 400),
    ("POST", "/socket", {"name": "x"}, "none", 401),
    ("GET", "/socket/{SB}", None, "a", 404),
    ("GET", "/socket/{NEW}", None, "a", 404),
    ("GET", "/socket/not-a-uuid", None, "a", 404),
    ("GET", "/socket/{SA}", None, "expired", 401),
    ("DELETE", "/socket/{SB}", None, "a", 404),
    ("DELETE", "/socket/{SA}", None, "none", 401),
    ("GET", "/socket/{SB}/tunnel", None, "a", 404),
    ("POST", "/socket/{SB}/tunnel", {}, "a", 404),
    ("POST", "/socket/{SA}/tunnel", b"{bad", "a", 400),
    ("POST", "/socket/{SA}/tunnel", b"[]", "a", 400),
    ("POST", "/socket/{SA}/tunnel", {}, "garbage", 401),
    ("GET", "/socket/{SA}/tunnel/{TB}", None, "a", 404),
    ("GET", "/socket/{SB}/tunnel/{TB}", None, "a", 404),
    ("GET", "/socket/{SA}/tunnel/nope", None, "a", 404),
    ("DELETE", "/socket/{SA}/tunnel/{TB}", None, "a", 404),
    ("DELETE", "/socket/{SB}/tunnel/{TB}", None, "a", 404),
    ("GET", "/", None, None, 404),
    ("GET", "/no/such/route", None, "a", 404),
    ("PUT", "/socket", {}, "a", 405),
    ("PATCH", "/socket", {}, "a", 405),
    ("PATCH", "/socket/{SA}", {"protected_socket": "yes"}, "a", 400),
    ("PATCH", "/socket/{SA}", {"protected_socket": True, "protected_username": "u"}, "a", 400),
    ("PATCH", "/socket/{SB}", {}, "a", 404),
    ("DELETE", "/socket/{SB}?unless_used_by_others=x", None, "a", 404),
    ("POST", "/socket/{SA}/tunnel", {"owner": 7}, "a", 400),
    ("POST", "/socket", {"name": "x", "unique_name": "yes"}, "a", 400),
    ("POST", "/_admin/faults", {"error_rate": 2}, None, 400),
    ("POST", "/_admin/faults", {"bogus": 1}, None, 400),
    ("POST", "/_admin/faults", {"status": 200}, None, 400),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("method,path,body,token,status", BAD,
                         ids=["{}-{}-{}".format(m, p, i) for i, (m, p, *_) in enumerate(BAD)])
def test_bad_input_is_refused_without_state_change(edge, world, method, path, body,
                                                   token, status):
    ids = world["ids"]
    before = snapshot(edge, world)
    resp = edge.api(method, _fill(path, ids), body=_fill(body, ids),
                    token=world["tokens"][token] if token else None)
    assert resp.status == status, resp.body
    assert resp.headers["content-type"].startswith("application/json")
    assert isinstance(resp.body, dict) and resp.body["error_message"]
    assert snapshot(edge, world) == before


# -- faults -------------------------------------------------------------------

@pytest.fixture
def faults(edge):
    def set_faults(settings):
        resp = edge.api("POST", "/_admin/faults", settings)
        assert resp.status == 200, resp.body
    yield set_faults
    set_faults({})


def test_faults_inject_errors_429_latency_and_timeouts(edge, account, faults):
    faults({"error_rate": 0.5, "status": 500})
    answers = [edge.api("GET", "/connect", token=account.token) for _ in range(40)]
    statuses = [a.status for a in answers]
    assert 0 < statuses.count(500) < 40 and statuses.count(200) == 40 - statuses.count(500)
    assert all(a.body["error_message"] for a in answers if a.status == 500)

    faults({"error_rate": 1.0, "status": 429, "retry_after": 2})
    resp = edge.api("GET", "/connect", token=account.token)
    assert resp.status == 429 and resp.headers["retry-after"] == "2"
    assert edge.api("GET", "/_admin/tunnels").status == 200   # admin is never faulted

    faults({"latency": 0.3})
    started = time.monotonic()
    assert edge.api("GET", "/connect", token=account.token).status == 200
    assert time.monotonic() - started >= 0.3

    faults({"timeout_rate": 1.0})
    with pytest.raises(TimeoutError):
        edge.api("GET", "/connect", token=account.token, timeout=0.5)

    faults({})
    assert edge.api("GET", "/connect", token=account.token).status == 200
