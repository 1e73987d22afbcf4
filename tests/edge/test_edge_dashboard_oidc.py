"""The dashboard's sign-in with the edge's identity provider (issue 25's "and with OIDC where the
edge has it"): a real provider (zitadel/oidc's example OP, edge/idptesting.py), the data plane
as relying party for the edge's own name, and a real browser (Debian's headless Chromium,
edge/browsertesting.py) that signs in through the provider's login page.

One provider, one edge and one browser for the module. Alice has an account (two sockets)
and an identity at the provider; mallory has only the identity; ops is named by
``--operators``. Screenshots go to ``test-artifacts/dashboard/`` (or
``$TEST_ARTIFACTS/dashboard``): oidc-sign-in.png, oidc-overview-alice.png, oidc-no-account.png,
oidc-forged-refused.png, oidc-overview-operator.png.
"""

import base64
import hashlib
import http.client
import os
import socket
import ssl
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.browsertesting import Browser
from edge.idptesting import CLIENT_ID, CLIENT_SECRET, IdentityProvider, IdpUser, free_port
from edge.testclients import Account
from edge.testing import REPO_ROOT, EdgeOptions, EdgeProcess, ssh_keygen
from edgetest_helpers import make_account, new_socket

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "dashboard"
ALICE = IdpUser("alice", "alice-pw", "alice@dash.test")
MALLORY = IdpUser("mallory", "mallory-pw", "mallory@dash.test")
OPS = IdpUser("ops", "ops-pw", "ops@dash.test")
EMAIL, ASSERTION = "Mysocket-Visitor-Email", "Mysocket-Visitor-Assertion"
SESSION = "__Host-edge-session"
LANDING = "/dashboard/sign-in/provider"


class World:
    """What the module's tests share: the edge, the provider, the browser, the accounts."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("dashboard-oidc")
    idp_port = free_port()
    (work / "client-secret").write_text(CLIENT_SECRET + "\n")
    opts = EdgeOptions(extra_args=(
        "--oidc-issuer", "http://localhost:{}/".format(idp_port), "--oidc-client-id", CLIENT_ID,
        "--oidc-client-secret-file", str(work / "client-secret"), "--signin-per-minute", "0",
        "--operators", OPS.email, "--dashboard-sample-interval", "0"))
    w = World()
    with EdgeProcess(work / "edge", opts) as edge:
        w.edge, w.work = edge, work
        w.base = "https://api.{}:{}".format(opts.domain, edge.https_port)
        with IdentityProvider(work / "idp", w.base + "/.edge/callback", [ALICE, MALLORY, OPS],
                              port=idp_port) as idp:
            w.idp = idp
            edge.register(ALICE.email, "alice-password", ssh_keygen(work / "alice_key"))
            w.alice = Account(ALICE.email, "alice-password", work / "alice_key", "", {},
                              edge.login(ALICE.email, "alice-password"))
            edge.register(OPS.email, "ops-password", ssh_keygen(work / "ops_key"))
            w.other = make_account(edge, work)
            w.alice_socks = [new_socket(edge, w.alice, name="alice-web"),
                             new_socket(edge, w.alice, name="alice-api")]
            w.other_sock = new_socket(edge, w.other, name="someone-else")
            with Browser(artifacts=ARTIFACTS) as browser:
                w.browser = browser
                yield w


def sign_in_with_provider(w, user: IdpUser, shot: str = "") -> None:
    """From the dashboard's sign-in page through the provider's login page, as user; returns
    once the browser is back on the edge's own name."""
    b = w.browser
    b.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})   # the provider's session too
    b.get(w.base + "/dashboard/")
    link = b.find("#sign-in-provider")
    assert link.text == "Sign in with localhost:{}".format(w.idp.port)
    if shot:
        b.screenshot(shot)
    link.click()
    b.wait("the provider's login page", lambda d: d.current_url.startswith(w.idp.issuer))
    b.find("#username").send_keys(user.username)
    b.find("#password").send_keys(user.password)
    b.find("button[type=submit]").click()
    b.wait("the way back from the provider", lambda d: d.current_url.startswith(w.base))


def session_cookie(w):
    return next((c for c in w.browser.driver.get_cookies() if c["name"] == SESSION), None)


def test_sign_in_with_the_provider_lists_the_accounts_sockets(world):
    w, b = world, world.browser
    sign_in_with_provider(w, ALICE, shot="oidc-sign-in")
    b.wait("the signed-in overview", lambda d: d.current_url == w.base + "/dashboard/"
           and d.find_elements("css selector", "#sign-out"))
    rows = {r.find_element("css selector", "td:nth-child(2)").text
            for r in b.find_all("table.sockets tbody tr")}
    assert rows == {s["dnsname"] for s in w.alice_socks}, rows
    assert ALICE.email in b.find("header .who").text
    assert w.other_sock["dnsname"] not in b.text()
    cookie = session_cookie(w)
    assert cookie and cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # the data plane kept no session of its own on the edge's name, and its binding is spent
    assert not [c for c in b.driver.get_cookies() if c["name"].startswith("__Host-mysocket-")]
    b.screenshot("oidc-overview-alice")
    # the password sign-in keeps working beside it
    b.find("#sign-out").click()
    b.wait("the sign-in page", lambda d: d.current_url.endswith("/dashboard/sign-in"))
    b.find("#email").send_keys(ALICE.email)
    b.find("#password").send_keys("alice-password")
    b.find("#sign-in").click()
    b.wait("the signed-in overview", lambda d: d.find_elements("css selector", "#sign-out"))


def test_an_email_without_an_account_gets_a_clear_page_and_no_session(world):
    w, b = world, world.browser
    sign_in_with_provider(w, MALLORY)
    b.wait("the page", lambda d: d.find_elements("css selector", "#message"))
    b.screenshot("oidc-no-account")
    text = b.find("#message").text
    assert "No account" in b.find("h1").text
    assert MALLORY.email in text and "no account" in text, text
    assert session_cookie(w) is None
    b.get(w.base + "/dashboard/")
    b.wait("the sign-in page", lambda d: d.current_url.endswith("/dashboard/sign-in"))


def test_the_operator_signs_in_with_the_provider_and_sees_every_account(world):
    w, b = world, world.browser
    sign_in_with_provider(w, OPS)
    b.wait("the operator's overview", lambda d: d.find_elements("css selector", "#sign-out"))
    accounts = {s.get_attribute("data-account") for s in b.find_all("section.account")}
    assert {ALICE.email, OPS.email, w.other.email} <= accounts, accounts
    b.screenshot("oidc-overview-operator")


def test_a_forged_email_header_in_the_browser_is_not_believed(world):
    """Mallory's browser adds alice's e-mail (and a made-up assertion) to every request it sends,
    through the whole sign-in: the data plane drops them, and the dashboard takes only the
    e-mail the edge signed, mallory's, which has no account."""
    w, b = world, world.browser
    b.driver.execute_cdp_cmd("Network.enable", {})
    b.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {
        EMAIL: ALICE.email, ASSERTION: "forged.jwt.value"}})
    try:
        sign_in_with_provider(w, MALLORY)
        b.wait("the page", lambda d: d.find_elements("css selector", "#message"))
        assert MALLORY.email in b.find("#message").text
        assert session_cookie(w) is None
        b.get(w.base + LANDING)                     # straight to where a sign-in ends
        b.screenshot("oidc-forged-refused")
        assert "no sign-in" in b.find("#message").text and session_cookie(w) is None
    finally:
        b.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def _tls_get(w, path: str, headers: dict):
    """(status, headers, body) of a GET on the edge's own name through its TLS front."""
    host = "api.edge.localhost"
    ctx = ssl.create_default_context(cafile=str(w.edge.ca_cert))
    raw = socket.create_connection(("127.0.0.1", w.edge.https_port), timeout=10)
    conn = http.client.HTTPSConnection(host, w.edge.https_port, timeout=10, context=ctx)
    conn.sock = ctx.wrap_socket(raw, server_hostname=host)
    try:
        conn.request("GET", path, headers={"Host": "{}:{}".format(host, w.edge.https_port), **headers})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read().decode(errors="replace")
    finally:
        conn.close()


def _plain_get(w, path: str, headers: dict):
    """The same on the plain API port: straight to the dashboard, no data plane in between."""
    conn = http.client.HTTPConnection("127.0.0.1", w.edge.api_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": "text/html", **headers})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read().decode(errors="replace")
    finally:
        conn.close()


def _edge_key(w) -> Ed25519PrivateKey:
    """The edge's own assertion key, derived as the data plane derives it from its sign-in secret
    (internal/signin: HKDF-SHA256, "mysocketd signin assertion"): only this test and the edge
    hold it."""
    secret = (w.edge.data_dir / "signin.secret").read_bytes().strip()
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"mysocketd signin assertion").derive(secret)
    return Ed25519PrivateKey.from_private_bytes(seed)


def _assertion(key: Ed25519PrivateKey, w, email: str = ALICE.email, **override) -> str:
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = base64.urlsafe_b64encode(hashlib.sha256(pub).digest()[:12]).decode().rstrip("=")
    now = int(time.time())
    claims = {"iss": w.base, "aud": "api.edge.localhost", "sub": email, "email": email,
              "iat": now, "nbf": now - 30, "exp": now + 300, **override}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def test_forged_headers_sent_straight_to_the_api_name_get_no_session(world):
    """Headers a visitor makes up get no session, on the edge's own name (the data plane drops
    them) and on the plain API port (the dashboard verifies the signature, the audience, the
    issuer and the expiry); the positive control: the edge's own key, right claims, is taken."""
    w = world
    other_key = Ed25519PrivateKey.generate()
    edge_key = _edge_key(w)
    now = int(time.time())
    refused = [
        ("the e-mail header alone, TLS front", _tls_get, {EMAIL: ALICE.email}),
        ("a made-up assertion, TLS front", _tls_get, {EMAIL: ALICE.email, ASSERTION: "forged.jwt.value"}),
        ("another key, TLS front", _tls_get, {ASSERTION: _assertion(other_key, w)}),
        ("even the edge's key, TLS front: dropped", _tls_get, {ASSERTION: _assertion(edge_key, w)}),
        ("the e-mail header alone, API port", _plain_get, {EMAIL: ALICE.email}),
        ("a made-up assertion, API port", _plain_get, {ASSERTION: "forged.jwt.value"}),
        ("another key, API port", _plain_get, {ASSERTION: _assertion(other_key, w)}),
        ("a socket's audience, API port", _plain_get,
         {ASSERTION: _assertion(edge_key, w, aud=w.alice_socks[0]["dnsname"])}),
        ("expired, API port", _plain_get,
         {ASSERTION: _assertion(edge_key, w, iat=now - 900, nbf=now - 900, exp=now - 600)}),
        ("another issuer, API port", _plain_get, {ASSERTION: _assertion(edge_key, w, iss="https://evil.test")}),
        ("no e-mail, API port", _plain_get, {ASSERTION: _assertion(edge_key, w, email="")}),
    ]
    for name, get, headers in refused:
        status, resp_headers, body = get(w, LANDING, headers)
        cookies = [v for k, v in resp_headers if k.lower() == "set-cookie" and v.startswith(SESSION + "=")]
        assert status == 401 and not cookies, (name, status, cookies, body)
        assert 'id="message"' in body and "Content-Security-Policy" in dict(resp_headers), name
    # signed by the edge for an e-mail without an account: the page that says so, no session
    status, resp_headers, body = _plain_get(w, LANDING, {ASSERTION: _assertion(edge_key, w, email=MALLORY.email)})
    assert status == 403 and "no account" in body and not any(
        k.lower() == "set-cookie" and v.startswith(SESSION + "=") for k, v in resp_headers), body
    status, resp_headers, body = _plain_get(w, LANDING, {ASSERTION: _assertion(edge_key, w)})
    cookies = [v for k, v in resp_headers if k.lower() == "set-cookie" and v.startswith(SESSION + "=")]
    assert status == 200 and len(cookies) == 1, (status, body)
