"""mysocket.Client against a scripted HTTP server on 127.0.0.1, counting every request.

As client-go's leaderelection_test counts API calls, each case says what the
server answers, in order, and what the client must do: how many requests it
sends, how long it asks to sleep (through the injected `sleep`, so no test
waits), and what it raises. The server is a real socket: timeouts, HTML pages
and headers travel as they would from a real API or a wrong --api-url.
"""

import base64
import json
import logging
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lib import mysocket

EMAIL, PASSWORD = "alice@example.com", "s3cret-Pa55"
USER_ID = "3f2b8c1e-0d4a-4e6b-9a55-6f1d2c3b4a59"
NOW = 1_900_000_000.0
HANG = "hang"                   # an answer that never comes (until the test ends)


def raw_jwt(payload):
    """A JWT-shaped token whose payload is the given JSON text (signature not checked by the client)."""
    def part(text):
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    return f"{part(json.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{part(payload)}.c2lnbmF0dXJl"


def jwt(**claims):
    return raw_jwt(json.dumps(claims))


TOKEN = jwt(user_id=USER_ID, exp=NOW + 3600)
LOGIN_OK = (200, {"token": TOKEN})


class FakeApi:
    """Answers each (method, path) from its script, in order (the last answer repeats); records requests."""

    def __init__(self):
        self.script = {}
        self.requests = []              # (method, path, headers, body)
        self.release = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = (self.command, self.path)
                api.requests.append((self.command, self.path, dict(self.headers), body))
                answers = api.script.get(key) or [(404, {"error_message": "no such route"})]
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if answer == HANG:
                    api.release.wait(10)
                    self.close_connection = True
                    return
                status, payload, *rest = answer
                headers = rest[0] if rest else {}
                if isinstance(payload, str):
                    data, ctype = payload.encode(), "text/html; charset=utf-8"
                elif payload is None:
                    data, ctype = b"", None
                else:
                    data, ctype = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), name="fake-api", daemon=True).start()

    def answer(self, method, path, *answers):
        self.script[(method, "/" + path)] = list(answers)

    def calls(self, method=None, path=None):
        return [(m, p) for m, p, _, _ in self.requests
                if (method is None or m == method) and (path is None or p == "/" + path)]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class Sleeps(list):
    """The injected sleep: records, and refuses what time.sleep refuses."""

    def __call__(self, seconds):
        if not seconds >= 0:                # negative or NaN: time.sleep raises ValueError
            raise ValueError(f"sleep length must be non-negative, not {seconds}")
        self.append(seconds)


@pytest.fixture
def api(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)     # 127.0.0.1 directly, whatever the environment says
    fake = FakeApi()
    fake.answer("POST", "login", LOGIN_OK)
    yield fake
    fake.close()


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def client(api, sleeps, clock):
    return mysocket.Client(api.url, EMAIL, PASSWORD, timeout=(2, 0.5), sleep=sleeps, clock=clock)


SOCKETS = [{"socket_id": "s1", "tunnels": []}]
SOCKET = {"socket_id": "s2", "dnsname": "x.edge.example", "tunnels": [{"tunnel_id": "t1", "local_port": 1}]}


# -- retries: (what the server answers, in order) -> (requests, sleeps, result or error) --------------------

@pytest.mark.parametrize("answers, requests, slept, outcome", [
    ([(200, SOCKETS)], 1, [], SOCKETS),
    ([(503, {"error_message": "down"}), (200, SOCKETS)], 2, [0.2], SOCKETS),
    ([(500, None)], 3, [0.2, 0.4], (mysocket.Unavailable, 500)),
    ([(502, "<html>Bad Gateway</html>")], 3, [0.2, 0.4], (mysocket.Unavailable, 502)),
    ([(429, {}, {"Retry-After": "2"}), (200, SOCKETS)], 2, [2.0], SOCKETS),
    ([(429, {}, {"Retry-After": "5"}), (200, SOCKETS)], 2, [5.0], SOCKETS),
    ([(429, {})], 3, [0.2, 0.4], (mysocket.Unavailable, 429)),
    ([HANG], 3, [0.2, 0.4], (mysocket.Unavailable, None)),
], ids=["ok", "503-then-ok", "500-thrice", "html-502-thrice", "429-retry-after-2", "429-retry-after-max",
        "429-no-retry-after", "timeout-thrice"])
def test_reads_retry_transient_answers(api, client, sleeps, answers, requests, slept, outcome):
    api.answer("GET", "connect", *answers)
    if isinstance(outcome, tuple):
        with pytest.raises(outcome[0]) as raised:
            client.sockets()
        assert raised.value.status == outcome[1]
    else:
        assert client.sockets() == outcome
    assert len(api.calls("GET", "connect")) == requests
    assert sleeps == slept
    assert len(api.calls("POST", "login")) == 1


def test_a_retry_after_longer_than_the_cap_is_handed_to_the_caller(api, client, sleeps):
    """The server said when to come back; asking sooner only spends the rate limit again. The
    controller requeues that one Service for error.retry_after instead."""
    api.answer("GET", "connect", (429, {"error_message": "slow down"}, {"Retry-After": "30"}), (200, SOCKETS))
    with pytest.raises(mysocket.Unavailable) as raised:
        client.sockets()
    assert raised.value.retry_after == 30.0 and raised.value.status == 429
    assert len(api.calls("GET", "connect")) == 1 and sleeps == []


def test_a_retry_after_date_is_honoured(api, client, sleeps, clock):
    api.answer("GET", "connect", (429, {}, {"Retry-After": formatdate(clock.now + 3, usegmt=True)}),
               (200, SOCKETS))
    assert client.sockets() == SOCKETS
    assert sleeps == [3.0]


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "soon", ""])
def test_a_nonsense_retry_after_is_ignored(api, client, sleeps, value):
    """A negative or NaN Retry-After made the client pass it to time.sleep, which raises ValueError."""
    api.answer("GET", "connect", (429, {}, {"Retry-After": value}), (200, SOCKETS))
    assert client.sockets() == SOCKETS
    assert sleeps == [0.2]


@pytest.mark.parametrize("create", [
    lambda c: c.connect({"name": "x"}),
    lambda c: c.create_tunnel("s2"),
], ids=["connect", "create_tunnel"])
@pytest.mark.parametrize("answer, requests", [
    ((503, {"error_message": "down"}), 1),
    ((500, None), 1),
    (HANG, 1),
], ids=["503", "500", "timeout"])
def test_creates_are_not_retried(api, client, sleeps, create, answer, requests):
    """After a timeout or a 5xx the socket may exist: only the caller can look for it by name."""
    api.answer("POST", "connect", answer)
    api.answer("POST", "socket/s2/tunnel", answer)
    with pytest.raises(mysocket.Unavailable):
        create(client)
    assert len(api.calls("POST", "connect") + api.calls("POST", "socket/s2/tunnel")) == requests
    assert sleeps == []


def test_a_create_refused_with_429_is_retried(api, client, sleeps):
    """429 means the server did nothing: safe to ask again."""
    api.answer("POST", "connect", (429, {}, {"Retry-After": "1"}), (200, SOCKET))
    assert client.connect({"name": "x"}) == SOCKET
    assert len(api.calls("POST", "connect")) == 2 and sleeps == [1.0]


# -- credentials ---------------------------------------------------------------------------------------

def test_logs_in_lazily_once_and_sends_the_token(api, client):
    api.answer("GET", f"user/{USER_ID}", (200, {"user_id": USER_ID, "user_name": USER_ID.replace("-", "")}))
    api.answer("GET", "connect", (200, SOCKETS))
    assert api.requests == []
    client.user()
    client.sockets()
    assert api.calls() == [("POST", "/login"), ("GET", f"/user/{USER_ID}"), ("GET", "/connect")]
    login, *others = api.requests
    assert json.loads(login[3]) == {"email": EMAIL, "password": PASSWORD}
    assert all(r[2].get("x-access-token") == TOKEN and PASSWORD.encode() not in r[3] for r in others)


def test_a_401_logs_in_again_without_spending_an_attempt(api, client, sleeps):
    """503, 401, 503, 200 with 3 attempts: the 401 is a re-login, not one of the three."""
    fresh = jwt(user_id=USER_ID, exp=NOW + 7200)
    api.answer("POST", "login", LOGIN_OK, (200, {"token": fresh}))
    api.answer("GET", "connect", (503, {}), (401, {"error_message": "token expired"}), (503, {}), (200, SOCKETS))
    assert client.sockets() == SOCKETS
    assert len(api.calls("GET", "connect")) == 4 and len(api.calls("POST", "login")) == 2
    assert api.requests[-1][2]["x-access-token"] == fresh
    assert sleeps == [0.2, 0.4]


def test_a_second_401_after_a_fresh_login_is_bad_credentials(api, client):
    api.answer("GET", "connect", (401, {"error_message": "no"}))
    with pytest.raises(mysocket.BadCredentials, match="refused a fresh token"):
        client.sockets()
    assert api.calls() == [("POST", "/login"), ("GET", "/connect")] * 2


def test_a_refused_login_names_the_email_and_never_the_password(api, client, caplog):
    caplog.set_level(logging.DEBUG)
    api.answer("POST", "login", (401, {"error_message": "wrong email or password"}))
    with pytest.raises(mysocket.BadCredentials) as raised:
        client.sockets()
    assert EMAIL in str(raised.value) and PASSWORD not in str(raised.value)
    assert PASSWORD not in caplog.text and PASSWORD not in repr(raised.value)
    assert api.calls() == [("POST", "/login")]              # a refused login is not retried


def test_the_token_is_renewed_shortly_before_it_expires(api, client, clock):
    api.answer("GET", "connect", (200, SOCKETS))
    client.sockets()
    clock.now = NOW + 3600 - 61                             # renewal is due 60 s before exp
    client.sockets()
    assert len(api.calls("POST", "login")) == 1
    clock.now = NOW + 3600 - 59
    client.sockets()
    assert len(api.calls("POST", "login")) == 2


def test_a_token_without_exp_is_renewed_within_an_hour(api, client, clock):
    api.answer("POST", "login", (200, {"token": jwt(user_id=USER_ID)}))
    api.answer("GET", "connect", (200, SOCKETS))
    client.sockets()
    clock.now = NOW + 3600
    client.sockets()
    assert len(api.calls("POST", "login")) == 2


def test_a_token_that_looks_expired_is_not_a_login_per_call(api, client, clock):
    """The server's clock behind ours: exp is already past here. Logging in before every call would
    run into the edge's login rate limit; a token that really expired is answered 401 anyway."""
    api.answer("POST", "login", (200, {"token": jwt(user_id=USER_ID, exp=NOW - 100)}))
    api.answer("GET", "connect", (200, SOCKETS))
    client.sockets()
    client.sockets()
    assert len(api.calls("POST", "login")) == 1
    clock.now = NOW + mysocket.MIN_TOKEN_USE
    client.sockets()
    assert len(api.calls("POST", "login")) == 2


@pytest.mark.parametrize("token", [
    "not-a-jwt",
    "a.!!!.c",
    raw_jwt("[1, 2]"),
    raw_jwt("7"),
    jwt(user_id=USER_ID, exp="tomorrow"),
    jwt(user_id=USER_ID, exp=None),
    raw_jwt(f'{{"user_id": "{USER_ID}", "exp": 1e999}}'),
    42,
    None,
], ids=["no-dots", "bad-base64", "payload-list", "payload-number", "exp-text", "exp-null", "exp-huge", "number",
        "null"])
def test_a_token_that_is_not_a_usable_jwt_is_an_api_error(api, client, token):
    """Not a KeyError, AttributeError or TypeError escaping from the login."""
    api.answer("POST", "login", (200, {"token": token}))
    with pytest.raises(mysocket.ApiError) as raised:
        client.sockets()
    assert type(raised.value) is mysocket.ApiError and raised.value.call == "login"
    assert api.calls("GET", "connect") == []


# -- answers a user can act on -----------------------------------------------------------------------

def test_404_is_not_found_with_the_api_message(api, client):
    api.answer("GET", "socket/nope", (404, {"error_message": "socket not found"}))
    with pytest.raises(mysocket.NotFound, match="socket not found"):
        client.socket("nope")


@pytest.mark.parametrize("delete", [
    lambda c: c.delete_socket("s1"),
    lambda c: c.delete_tunnel("s1", "t1"),
], ids=["socket", "tunnel"])
@pytest.mark.parametrize("answer, result", [
    ((204, None), True),
    ((200, {}), True),
    ((404, {"error_message": "socket not found"}), False),
], ids=["204", "200", "404"])
def test_deleting_is_idempotent(api, client, delete, answer, result):
    api.answer("DELETE", "socket/s1", answer)
    api.answer("DELETE", "socket/s1/tunnel/t1", answer)
    assert delete(client) is result
    assert len(api.calls("DELETE")) == 1


@pytest.mark.parametrize("call", [
    lambda c: c.sockets(),
    lambda c: c.socket("s1"),
    lambda c: c.delete_socket("s1"),
], ids=["list", "get", "delete"])
@pytest.mark.parametrize("status", [200, 404])
def test_an_html_answer_asks_whether_the_url_is_the_api(api, client, call, status):
    """A web page, even a 404 one, is not the API saying "no such socket": a delete must not
    report a socket gone because --api-url points at a website."""
    page = "<!doctype html><html><body>Welcome to nginx!</body></html>"
    api.answer("GET", "connect", (status, page))
    api.answer("GET", "socket/s1", (status, page))
    api.answer("DELETE", "socket/s1", (status, page))
    with pytest.raises(mysocket.ApiError, match=r"is --api-url the Mysocket API\?") as raised:
        call(client)
    assert type(raised.value) is mysocket.ApiError


def test_an_html_login_page_asks_whether_the_url_is_the_api(api, client):
    api.answer("POST", "login", (404, "<html>Not Found</html>"))
    with pytest.raises(mysocket.ApiError, match=r"is --api-url the Mysocket API\?"):
        client.login()


def test_an_error_without_a_json_body_keeps_its_meaning(api, client):
    """An empty 404 (no page at all) is still the API's answer."""
    api.answer("DELETE", "socket/s1", (404, None))
    assert client.delete_socket("s1") is False


class _Elector:
    """A leadership that the test ends while a write waits for its retry."""

    def __init__(self):
        self.current = "leading"

    def state(self):
        return self.current


def test_a_retried_delete_whose_fence_closed_meanwhile_is_not_sent(api, clock):
    """The first DELETE gets a 503; while the client waits to retry, the renew deadline passes. The retry
    must not go out: a standby may lead by now (lib/leader.py)."""
    from lib.leader import Fence, Fenced
    api.answer("DELETE", "socket/s1", (503, {"error_message": "busy"}), (204, None))
    elector = _Elector()
    fence = Fence(elector)

    def sleep(seconds):
        elector.current = "unconfirmed"

    client = mysocket.Client(api.url, EMAIL, PASSWORD, sleep=sleep, clock=clock)
    with pytest.raises(Fenced):
        client.delete_socket("s1", before_send=fence.check)
    assert api.calls("DELETE") == [("DELETE", "/socket/s1")]
