"""Visitors sign in at the edge (issue 22): a real OpenID Connect provider (zitadel/oidc's
example OP, built by make build), the edge's data plane as relying party, and a real
browser (Debian's headless Chromium) going through the provider's login page.

One provider, one edge and one browser for the module. Every page the browser saw is
kept as a screenshot in the test's tmp directory (``signin-*.png``).
"""

import http.client
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from selenium.webdriver.common.by import By

from edge.browsertesting import Browser
from edge.idptesting import CLIENT_ID, CLIENT_SECRET, IdentityProvider, IdpUser, free_port
from edge.testing import EdgeProcess
from edgetest_helpers import Backends, SshClients, forward_argv, make_account, new_socket

pytestmark = pytest.mark.timeout(120)

ALICE = IdpUser("alice", "alice-pw", "alice@allowed.test")
MALLORY = IdpUser("mallory", "mallory-pw", "mallory@elsewhere.test")
UNVERIFIED = IdpUser("una", "una-pw", "una@allowed.test", email_verified=False)
EMAIL, ASSERTION = "Mysocket-Visitor-Email", "Mysocket-Visitor-Assertion"


class EchoApp:
    """The app behind the tunnels: shows the e-mail header it got, keeps every request's headers."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.headers.get("Host"), self.path, dict(self.headers.items())))
                body = "<html><body><h1>the app</h1><p id='email'>{}</p><p id='path'>{}</p></body></html>".format(
                    self.headers.get(EMAIL, "(no e-mail header)"), self.path).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.send_header(EMAIL, "app-forged@allowed.test")     # an app may not speak as the edge
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A provider, an edge signing in with it, two protected sockets and one open, served by one app."""
    work = tmp_path_factory.mktemp("signin")
    idp_port = free_port()
    issuer = "http://localhost:{}/".format(idp_port)
    (work / "client-secret").write_text(CLIENT_SECRET + "\n")
    edge = EdgeProcess(work / "edge", admin=True, extra_args=(
        "--oidc-issuer", issuer, "--oidc-client-id", CLIENT_ID,
        "--oidc-client-secret-file", str(work / "client-secret"), "--signin-per-minute", "0"))
    app, backends, ssh = EchoApp(), Backends(), SshClients(work)
    with edge:
        public = "https://api.edge.localhost:{}".format(edge.https_port)
        with IdentityProvider(work / "idp", public + "/.edge/callback", [ALICE, MALLORY, UNVERIFIED],
                              port=idp_port) as idp:
            account = make_account(edge, work)
            socks = {
                "a": new_socket(edge, account, name="a", cloud_authentication_enabled=True,
                                cloud_authentication_email_allowed_addressses=[ALICE.email]),
                "b": new_socket(edge, account, name="b", cloud_authentication_enabled=True,
                                cloud_authentication_email_allowed_domains=["allowed.test"]),
                "open": new_socket(edge, account, name="open")}
            for sock in socks.values():
                port = sock["tunnels"][0]["local_port"]
                ssh.start(forward_argv(edge, account, port, app.port))
                edge.wait_forward(port)
            try:
                with Browser(artifacts=work / "screenshots") as browser:
                    yield World(edge, idp, app, browser, socks, public, work / "screenshots", account)
            finally:
                ssh.stop_all()
                backends.close()
                app.close()
                print("screenshots in", work / "screenshots")


class World:
    def __init__(self, edge, idp, app, browser, socks, public, shots, account):
        self.edge, self.idp, self.app, self.browser, self.account = edge, idp, app, browser, account
        self.socks, self.public, self.shots = socks, public, shots

    def url(self, name: str, path: str = "/") -> str:
        return "https://{}:{}{}".format(self.socks[name]["dnsname"], self.edge.https_port, path)

    def host(self, name: str) -> str:
        return self.socks[name]["dnsname"]

    def forget_cookies(self):
        self.browser.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    def sign_in(self, name: str, user: IdpUser, path: str, shot: str):
        """Open the socket's page: the provider's login page, filled in as user; back at the socket."""
        b = self.fill_provider_login(name, user, path, shot)
        b.find("button[type=submit]").click()
        b.wait("the way back from the provider", lambda d: not d.current_url.startswith(self.idp.issuer)
               and "/.edge/" not in d.current_url)
        b.screenshot(shot)

    def fill_provider_login(self, name: str, user: IdpUser, path: str, shot: str) -> Browser:
        """Open the socket's page: the provider's login page, filled in as user (not yet sent)."""
        b = self.browser
        b.get(self.url(name, path))
        b.wait("the provider's login page", lambda d: d.current_url.startswith(self.idp.issuer))
        b.find("#username")
        b.screenshot(shot + "-provider-login")
        b.find("#username").send_keys(user.username)
        b.find("#password").send_keys(user.password)
        return b

    def session_cookie(self, name: str) -> str:
        self.browser.get(self.url(name, "/.edge/nothing-here"))  # any page of the host, to read its cookies
        for c in self.browser.driver.get_cookies():
            if c["name"] == "__Host-mysocket-session":
                return c["value"]
        raise AssertionError("no session cookie on {}".format(self.host(name)))

    def https(self, name: str, path: str = "/", headers=None):
        """(status, headers, body) of a GET on the socket's host over TLS with its own SNI."""
        host = self.host(name)
        ctx = ssl.create_default_context(cafile=str(self.edge.ca_cert))
        raw = socket.create_connection(("127.0.0.1", self.edge.https_port), timeout=10)
        conn = http.client.HTTPSConnection(host, self.edge.https_port, timeout=10, context=ctx)
        conn.sock = ctx.wrap_socket(raw, server_hostname=host)
        try:
            conn.request("GET", path, headers={"Host": "{}:{}".format(host, self.edge.https_port),
                                               **(headers or {})})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read().decode(errors="replace")
        finally:
            conn.close()

    def app_saw(self, path: str) -> dict:
        """The headers the app got with the last request for path."""
        for _, p, headers in reversed(self.app.seen):
            if p == path:
                return headers
        raise AssertionError("the app never got {}".format(path))


def test_allowed_user_signs_in_and_the_app_learns_who(world):
    world.forget_cookies()
    world.sign_in("a", ALICE, "/hello?x=1", "signin-1-app-as-alice")
    b = world.browser
    assert b.url == world.url("a", "/hello?x=1")                      # back where the visitor was going
    assert b.find("#email").text == ALICE.email
    headers = world.app_saw("/hello?x=1")
    assert headers[EMAIL] == ALICE.email
    assert "__Host-mysocket-session" not in headers.get("Cookie", "")   # the session is the edge's, not the app's
    # the assertion verifies against the JWKS the edge publishes on its own name (fetched by the browser)
    b.get(world.public + "/.well-known/jwks.json")
    b.screenshot("signin-2-jwks")
    jwks = json.loads(b.driver.find_element(By.TAG_NAME, "body").text)
    [key] = jwks["keys"]
    claims = jwt.decode(headers[ASSERTION], jwt.PyJWK(key).key, algorithms=["EdDSA"],
                        audience=world.host("a"), issuer=world.public)
    assert claims["email"] == claims["sub"] == ALICE.email
    with pytest.raises(jwt.InvalidAudienceError):                     # it names the socket it was for
        jwt.decode(headers[ASSERTION], jwt.PyJWK(key).key, algorithms=["EdDSA"],
                   audience=world.host("b"), issuer=world.public)
    # the app's own answer cannot speak as the edge either
    assert "app-forged" not in b.driver.page_source


def test_forged_identity_headers_are_dropped(world):
    cookie = world.session_cookie("a")
    forged = {EMAIL: "ceo@allowed.test", ASSERTION: "forged.jwt.value",
              "Cookie": "__Host-mysocket-session=" + cookie}
    status, headers, body = world.https("a", "/forged", forged)
    assert status == 200 and ALICE.email in body
    seen = world.app_saw("/forged")
    assert seen[EMAIL] == ALICE.email and seen[ASSERTION] != "forged.jwt.value"
    assert EMAIL not in headers                                           # the app's forged answer header too
    # on a socket without sign-in the headers are removed, never passed on
    status, _, body = world.https("open", "/open-forged", {EMAIL: "ceo@allowed.test", ASSERTION: "x.y.z"})
    assert status == 200 and "(no e-mail header)" in body
    seen = world.app_saw("/open-forged")
    assert EMAIL not in seen and ASSERTION not in seen
    # and without a session nothing reaches the app: the visitor is sent to sign in
    before = len(world.app.seen)
    status, headers, _ = world.https("a", "/no-session", {EMAIL: ALICE.email})
    assert status == 302 and headers["Location"].startswith(world.public + "/.edge/start?")
    assert headers["Mysocket-Edge"] == "sign-in" and len(world.app.seen) == before


def test_session_of_one_socket_is_not_accepted_by_another(world):
    cookie = world.session_cookie("a")
    assert world.https("a", "/mine", {"Cookie": "__Host-mysocket-session=" + cookie})[0] == 200
    status, headers, _ = world.https("b", "/theirs", {"Cookie": "__Host-mysocket-session=" + cookie})
    assert status == 302 and headers["Location"].startswith(world.public + "/.edge/start?")
    tampered = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
    status, headers, _ = world.https("a", "/tampered", {"Cookie": "__Host-mysocket-session=" + tampered})
    assert status == 302 and headers["Location"].startswith(world.public + "/.edge/start?")
    # in the browser: a tampered cookie sends the visitor back to the provider
    world.browser.driver.execute_cdp_cmd("Network.setCookie", {
        "name": "__Host-mysocket-session", "value": tampered, "url": world.url("a"), "secure": True,
        "httpOnly": True, "sameSite": "Lax", "path": "/"})
    world.browser.get(world.url("a", "/again"))
    world.browser.wait("the provider", lambda d: d.current_url.startswith(world.idp.issuer))
    world.browser.screenshot("signin-3-tampered-cookie-back-to-provider")


def test_sign_out_then_a_user_outside_the_lists_gets_the_403_page(world):
    world.forget_cookies()
    world.sign_in("a", ALICE, "/", "signin-4-alice-again")
    b = world.browser
    b.get(world.url("a", "/.edge/signout"))
    b.screenshot("signin-5-signed-out")
    assert "Signed out" in b.text()
    b.get(world.url("a", "/after-signout"))
    b.wait("the provider after signing out", lambda d: d.current_url.startswith(world.idp.issuer))
    world.forget_cookies()
    world.sign_in("a", MALLORY, "/", "signin-6-mallory-not-allowed")
    assert "Not allowed" in b.text() and MALLORY.email in b.text()
    status, headers, body = world.https("a", "/", {"Cookie": "__Host-mysocket-session=" + world.session_cookie("a")})
    assert status == 403 and headers["Mysocket-Edge"] == "not-allowed"
    assert all(MALLORY.email not in h.get(EMAIL, "") for _, _, h in world.app.seen)


def test_an_unverified_email_is_refused(world):
    world.forget_cookies()
    b = world.browser
    b.get(world.url("b", "/"))
    b.wait("the provider", lambda d: d.current_url.startswith(world.idp.issuer))
    b.find("#username").send_keys(UNVERIFIED.username)
    b.find("#password").send_keys(UNVERIFIED.password)
    b.find("button[type=submit]").click()
    b.wait("the edge's answer", lambda d: "not verified" in d.find_element(By.TAG_NAME, "body").text)
    b.screenshot("signin-7-unverified")
    assert all(UNVERIFIED.email not in h.get(EMAIL, "") for _, _, h in world.app.seen)


def test_domain_list_admits_any_address_of_the_domain(world):
    world.forget_cookies()
    world.sign_in("b", ALICE, "/by-domain", "signin-8-b-by-domain")
    assert world.browser.find("#email").text == ALICE.email


def test_a_code_url_is_worthless_outside_the_browser_that_started(world):
    """The one-time code URL (https://H/.edge/signin?code=...) of a real sign-in, held in the
    browser before it is sent, is replayed by someone who saw it (a proxy's log, a synced
    history): as on another node of a global edge, where this code was never taken. The edge's
    page refuses it without the binding cookie H gave the browser that started, and with
    another visitor's binding; then the browser that started sends it and gets in."""
    world.forget_cookies()
    b = world.fill_provider_login("a", ALICE, "/bound?x=1", "signin-12-bound")
    with b.devtools() as dt:
        dt.send("Fetch.enable", {"patterns": [{"urlPattern": "*/.edge/signin\\?code=*", "requestStage": "Request"}]})
        dt.send("Runtime.evaluate", {"expression": "document.querySelector('button[type=submit]').click()"})
        held = dt.event("Fetch.requestPaused", timeout=20)
        code_url = held["request"]["url"]
        assert code_url.startswith(world.url("a", "/.edge/signin?code="))
        path = code_url[len(world.url("a", "")):]
        status, headers, body = world.https("a", path)                               # no cookie at all
        assert status == 400 and headers["Mysocket-Edge"] == "sign-in", body
        assert "belongs to the browser that started" in body and "Set-Cookie" not in headers
        status, headers, _ = world.https("a", "/stranger")          # a stranger sent to sign in on H too
        foreign = headers["Set-Cookie"].split(";")[0]
        assert status == 302 and foreign.startswith("__Host-mysocket-bind=")
        status, headers, body = world.https("a", path, {"Cookie": foreign})
        assert status == 400 and "belongs to the browser that started" in body
        assert "__Host-mysocket-session" not in headers.get("Set-Cookie", "")
        dt.send("Fetch.continueRequest", {"requestId": held["requestId"]})    # the browser sends it now
        dt.send("Fetch.disable")
    b.wait("the app", lambda d: d.current_url == world.url("a", "/bound?x=1"))
    b.screenshot("signin-12-bound-browser-got-in")
    assert b.find("#email").text == ALICE.email
    assert world.https("a", path)[0] == 400                                # and it is used up on this node


def test_lists_change_in_place_and_both_kinds_of_auth_are_refused(world):
    """PATCH /socket/{id} changes the lists without a new name, and the next request is checked
    against them: mallory's session (refused above) now passes. Basic auth and sign-in on one
    socket are refused with a clear message."""
    edge, a = world.edge, world.socks["a"]
    token = edge.login(world.account.email, world.account.password)
    world.forget_cookies()
    world.sign_in("a", MALLORY, "/", "signin-9-mallory-before-the-change")
    assert "Not allowed" in world.browser.text()
    resp = edge.api("PATCH", "/socket/" + a["socket_id"], {
        "cloud_authentication_email_allowed_addressses": [ALICE.email, MALLORY.email]}, token=token)
    assert resp.status == 200, resp.body
    assert resp.body["dnsname"] == a["dnsname"]
    assert resp.body["cloud_authentication_email_allowed_addressses"] == [ALICE.email, MALLORY.email]
    world.browser.get(world.url("a", "/after-the-change"))
    world.browser.screenshot("signin-10-mallory-after-the-change")
    assert world.browser.find("#email").text == MALLORY.email
    refused = [
        ("POST", "/connect", {"name": "both", "protected_socket": True, "protected_username": "u",
                              "protected_password": "p", "cloud_authentication_enabled": True}),
        ("PATCH", "/socket/" + a["socket_id"], {"protected_socket": True, "protected_username": "u",
                                                "protected_password": "p"}),
        ("PATCH", "/socket/" + world.socks["open"]["socket_id"],
         {"cloud_authentication_email_allowed_domains": ["x.test"]}),
    ]
    for method, path, body in refused:
        resp = edge.api(method, path, body, token=token)
        assert resp.status == 400 and ("not both" in resp.body["error_message"]
                                       or "cloud_authentication_enabled" in resp.body["error_message"]), resp.body


def test_a_provider_outage_keeps_every_other_name_and_the_sessions_made(world):
    """Last in the module: the provider is stopped. Names without sign-in keep serving and a
    session already made keeps working (the edge checks sessions itself). A new visitor is still
    sent on to the provider at once (discovery was done before; a provider never reached gets the
    edge's 503 page instead: internal/signin TestStart)."""
    world.forget_cookies()
    world.sign_in("a", ALICE, "/before-the-outage", "signin-11-before-the-outage")
    cookie = world.session_cookie("a")
    world.idp.stop()
    status, _, body = world.https("open", "/during-the-outage")
    assert status == 200 and "the app" in body
    status, _, body = world.https("a", "/during", {"Cookie": "__Host-mysocket-session=" + cookie})
    assert status == 200 and ALICE.email in body
    status, headers, _ = world.https("b", "/")
    assert status == 302 and headers["Location"].startswith(world.public + "/.edge/start?")
    start = headers["Location"][len(world.public):]
    ctx = ssl.create_default_context(cafile=str(world.edge.ca_cert))
    raw = socket.create_connection(("127.0.0.1", world.edge.https_port), timeout=30)
    conn = http.client.HTTPSConnection("api.edge.localhost", timeout=30, context=ctx)
    conn.sock = ctx.wrap_socket(raw, server_hostname="api.edge.localhost")
    try:
        conn.request("GET", start, headers={"Host": "api.edge.localhost:{}".format(world.edge.https_port)})
        resp = conn.getresponse()
        assert resp.status == 302 and resp.getheader("Location").startswith(world.idp.issuer)
    finally:
        conn.close()
