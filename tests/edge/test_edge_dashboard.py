"""The dashboard in a real browser (Debian's headless Chromium, edge.browsertesting) against a
real edge with real tunnels (OpenSSH ``ssh -R``) and real traffic through its HTTP front.

One edge and one browser for the module. Account A has two sockets: ``web`` (one tunnel,
forwarded by ssh with an owner) and ``idle`` (a tunnel nobody forwards); account B has one
socket; ``ops@example.com`` is the edge's operator (``--operators``). The browser reaches the
dashboard by the edge's own name, ``https://api.edge.localhost:<https>/dashboard/``, through
the data plane's TLS front, as a person would.

Screenshots of every page are kept in ``test-artifacts/dashboard/`` at the top of the
repository (``$TEST_ARTIFACTS/dashboard`` when set): sign-in.png, overview-a.png, socket-a.png,
socket-a-under-load.png, overview-a-certificates.png, overview-b.png, not-found-b.png, overview-operator.png,
csrf-refused.png, signed-out.png.
"""

import http.client
import os
import re
import urllib.parse
from pathlib import Path

import pytest

from edge.browsertesting import Browser
from edge.testing import REPO_ROOT, EdgeOptions, EdgeProcess, ssh_keygen
from edgetest_helpers import Backends, SshClients, forward_argv, make_account, new_socket

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "dashboard"
OPERATOR = "ops@example.com"
OWNER = "cluster-7f3a/replica-0"


class World:
    """What the module's tests share: the edge, the accounts, their sockets, the browser."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    opts = EdgeOptions(admin=True, extra_args=("--operators", OPERATOR,
                                               "--dashboard-sample-interval", "1"))
    w = World()
    ssh, backends = SshClients(tmp), Backends()
    with EdgeProcess(tmp / "edge", opts) as edge:
        try:
            w.edge = edge
            w.a, w.b = make_account(edge, tmp), make_account(edge, tmp)
            # The operator is an ordinary account whose e-mail --operators names.
            edge.register(OPERATOR, "ops-password", ssh_keygen(tmp / "ops_key"))
            w.web = new_socket(edge, w.a, name="web", tunnel_owner=OWNER)
            w.idle = new_socket(edge, w.a, name="idle")
            w.other = new_socket(edge, w.b, name="secret-shop", protected_socket=True,
                                 protected_username="shopper", protected_password="hunter2-pw")
            for acct, sock in ((w.a, w.web), (w.b, w.other)):
                port = sock["tunnels"][0]["local_port"]
                ssh.start(forward_argv(edge, acct, port, backends.start().port))
                edge.wait_forward(port)
            w.base = "https://{}:{}".format("api." + opts.domain, edge.https_port)
            with Browser(artifacts=ARTIFACTS) as browser:
                w.browser = browser
                yield w
        finally:
            ssh.stop_all()
            backends.close()


def shot(b: Browser, name: str) -> None:
    """A screenshot of the whole page (the window made as tall as the page, then put back)."""
    height = b.driver.execute_script("return document.documentElement.scrollHeight")
    b.driver.set_window_size(1280, max(900, min(height + 100, 4000)))
    b.screenshot(name)
    b.driver.set_window_size(1280, 900)


def sign_in(w, email: str, password: str, picture: str = "") -> None:
    b = w.browser
    b.driver.delete_all_cookies()
    b.get(w.base + "/dashboard/")
    b.find("#email").send_keys(email)
    b.find("#password").send_keys(password)
    if picture:
        shot(b, picture)
    b.find("#sign-in").click()
    b.wait("the signed-in page", lambda d: "/dashboard/sign-in" not in d.current_url
           and d.find_elements("css selector", "#sign-out"))


def chart_count(w, socket_id: str, what: str = "requests") -> int:
    """The chart's count of requests (or errors) in its window, read in one step: the page's
    script replaces the figure every second."""
    value = w.browser.driver.execute_script(
        "const f = document.querySelector('figure[data-chart=\"' + arguments[0] + '\"]');"
        "return f ? f.getAttribute('data-' + arguments[1]) : null;", socket_id, what)
    return int(value) if value is not None else -1


def test_sign_in_lists_sockets_and_tunnels_as_they_are(world):
    w, b = world, world.browser
    b.driver.delete_all_cookies()
    b.get(w.base + "/")
    b.wait("the redirect to the sign-in page", lambda d: d.current_url.endswith("/dashboard/sign-in"))
    sign_in(w, w.a.email, w.a.password, picture="sign-in")
    rows = {r.find_element("css selector", "td:nth-child(2)").text: r.text
            for r in b.find_all("table.sockets tbody tr")}
    assert set(rows) == {w.web["dnsname"], w.idle["dnsname"]}, rows
    assert "1 of 1 connected" in rows[w.web["dnsname"]]
    assert "0 of 1 connected" in rows[w.idle["dnsname"]]
    quotas = b.find("table.quotas").text
    assert "sockets 2 of 1000" in quotas and "tunnels 2 of 4000" in quotas, quotas
    # The one ssh -R session of the account, as this node's data plane counts it (read every 1 s).
    b.wait("the account's SSH session in its quotas", lambda d: d.refresh() or
           "SSH sessions now, this node 1 of 2000" in b.find("table.quotas").text)
    shot(b, "overview-a")

    b.find('a[href="/dashboard/socket/{}"]'.format(w.web["socket_id"])).click()
    b.find("table.tunnels")
    tunnel = w.web["tunnels"][0]
    row = b.find("table.tunnels tbody tr").text
    for expected in (tunnel["tunnel_id"], str(tunnel["local_port"]), OWNER,
                     tunnel["tunnel_server"], "yes", "from 127.0.0.1"):
        assert expected in row, (expected, row)
    shot(b, "socket-a")


def test_rate_chart_moves_under_load(world):
    w, b = world, world.browser
    sign_in(w, w.a.email, w.a.password)
    b.get(w.base + "/dashboard/socket/" + w.web["socket_id"])
    b.find("figure.chart.large")
    before = chart_count(w, w.web["socket_id"])
    sent = 60
    for _ in range(sent):
        assert w.edge.get(w.web["dnsname"], "/")[0] == 200
    for _ in range(5):          # no tunnel connected: the edge answers 502 by itself
        assert w.edge.get(w.idle["dnsname"], "/")[0] == 502
    # The page's script swaps the chart in every second; the sampler reads every second.
    b.wait("the chart to count the load", lambda d: chart_count(w, w.web["socket_id"]) >= before + sent,
           timeout=20)
    # ...and draws it: the requests line rises off its baseline (y of 158 in a 160 high chart).
    heights = b.driver.execute_script(
        "return document.querySelector('figure.chart.large polyline.req').getAttribute('points')")
    assert min(float(xy.split(",")[1]) for xy in heights.split()) < 150, heights
    caption = b.driver.execute_script(
        "return document.querySelector('figure.chart.large figcaption').textContent")
    assert re.search(r"\d+ requests, 0 errors in 15 min", caption), caption
    shot(b, "socket-a-under-load")
    b.get(w.base + "/dashboard/")
    b.wait("the idle socket's errors", lambda d: chart_count(w, w.idle["socket_id"], "errors") >= 5,
           timeout=20)
    # Its names' certificates: signed on demand by the edge's internal CA here (the data plane
    # exports the CA's expiry); a given or ACME certificate would be named (the units test that).
    b.wait("the certificate of the socket's name", lambda d: d.refresh() or any(
        w.web["dnsname"] in r.text and "internal CA" in r.text and " days" in r.text
        for r in b.find_all("table.certificates tbody tr")))
    shot(b, "overview-a-certificates")


def test_second_account_sees_none_of_the_first(world):
    w, b = world, world.browser
    sign_in(w, w.b.email, w.b.password)
    text, source = b.text(), b.driver.page_source
    assert w.other["dnsname"] in text
    for theirs in (w.a.email, w.web["dnsname"], w.idle["dnsname"], w.web["socket_id"], OWNER):
        assert theirs not in source, theirs
    shot(b, "overview-b")
    for path in ("/dashboard/socket/", "/dashboard/chart/"):
        b.get(w.base + path + w.web["socket_id"])
        assert w.web["dnsname"] not in b.driver.page_source
    b.get(w.base + "/dashboard/socket/" + w.web["socket_id"])
    assert "No such socket" in b.text()
    shot(b, "not-found-b")


def test_operator_sees_every_account(world):
    w, b = world, world.browser
    sign_in(w, OPERATOR, "ops-password")
    text = b.text()
    assert "operator: every account" in text
    accounts = {s.get_attribute("data-account") for s in b.find_all("section.account")}
    assert {w.a.email, w.b.email, OPERATOR} <= accounts, accounts
    for name in (w.web["dnsname"], w.idle["dnsname"], w.other["dnsname"]):
        assert name in text, name
    shot(b, "overview-operator")
    b.get(w.base + "/dashboard/socket/" + w.other["socket_id"])
    assert "basic auth as shopper" in b.text()


def test_no_secret_on_any_page_and_cookies_locked_down(world):
    w, b = world, world.browser
    sign_in(w, OPERATOR, "ops-password")
    pages = ["/dashboard/", "/dashboard/socket/" + w.other["socket_id"],
             "/dashboard/socket/" + w.web["socket_id"]]
    for path in pages:
        b.get(w.base + path)
        source = b.driver.page_source
        for secret in ("scrypt$", "hunter2-pw", w.a.password, w.a.token, w.b.token,
                       w.a.pubkey.split()[1], "ops-password"):
            assert secret not in source, (path, secret[:12])
    cookie = {c["name"]: c for c in b.driver.get_cookies()}["__Host-edge-session"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    # The page's script ran (the CSP allows it as a file) and inline script would not.
    resp = raw(w, "GET", "/dashboard/sign-in")
    csp = resp.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp


def raw(w, method: str, path: str, body: str = "", cookie: str = "") -> http.client.HTTPResponse:
    """One request to the plain API port (no browser), as any client could send."""
    conn = http.client.HTTPConnection("127.0.0.1", w.edge.api_port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=body.encode(), headers=headers)
    resp = conn.getresponse()
    resp.text = resp.read().decode(errors="replace")
    conn.close()
    return resp


def test_csrf_rejected_without_token(world):
    w, b = world, world.browser
    b.driver.delete_all_cookies()
    b.get(w.base + "/dashboard/sign-in")
    b.find("#email").send_keys(w.a.email)
    b.find("#password").send_keys(w.a.password)
    b.driver.execute_script("document.querySelector('input[name=csrf]').remove()")
    b.find("#sign-in").click()
    b.wait("the refusal", lambda d: "CSRF" in d.find_element("css selector", "body").text)
    assert not b.find_all("#sign-out")
    shot(b, "csrf-refused")
    # Without the browser: no token, or a token without its cookie, is refused and signs no one in.
    form = urllib.parse.urlencode({"email": w.a.email, "password": w.a.password})
    resp = raw(w, "POST", "/dashboard/sign-in", form)
    assert resp.status == 403 and resp.getheader("Set-Cookie", "").find("edge-session") == -1
    page = raw(w, "GET", "/dashboard/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    resp = raw(w, "POST", "/dashboard/sign-in", form + "&csrf=" + token)
    assert resp.status == 403
    # Signed in, sign-out without the token leaves the session as it was.
    sign_in(w, w.a.email, w.a.password)
    b.driver.execute_script("document.querySelector('form.sign-out input[name=csrf]').remove()")
    b.find("#sign-out").click()
    b.wait("the refusal", lambda d: "CSRF" in d.find_element("css selector", "body").text)
    b.get(w.base + "/dashboard/")
    assert b.find_all("#sign-out")


def test_sign_out_ends_the_session(world):
    w, b = world, world.browser
    sign_in(w, w.a.email, w.a.password)
    session = {c["name"]: c for c in b.driver.get_cookies()}["__Host-edge-session"]["value"]
    b.find("#sign-out").click()
    b.wait("the sign-in page", lambda d: d.current_url.endswith("/dashboard/sign-in"))
    shot(b, "signed-out")
    resp = raw(w, "GET", "/dashboard/", cookie="__Host-edge-session=" + session)
    assert resp.status == 303 and resp.getheader("Location") == "/dashboard/sign-in"


def test_sign_in_attempts_are_bounded(world):
    """The API's limit of failed logins per e-mail (5 a minute) holds on the dashboard's door."""
    w = world
    page = raw(w, "GET", "/dashboard/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    nonce = re.search(r"__Host-edge-signin=([^;]+)", page.getheader("Set-Cookie")).group(1)
    form = urllib.parse.urlencode({"email": w.b.email, "password": "wrong", "csrf": token})
    statuses = [raw(w, "POST", "/dashboard/sign-in", form, "__Host-edge-signin=" + nonce).status
                for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses
