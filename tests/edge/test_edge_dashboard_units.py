"""Pure parts of the dashboard: the metrics text, the rings, the sessions, the escaping."""

import asyncio

import pytest

from edge.cache import State
from edge.config import Limits
from edge.dashboard import promtext, render, views
from edge.dashboard.sampler import Point, Sampler, is_error, reduce
from edge.dashboard.sessions import Sessions
from edge.store import Socket, User

TEXT = '''# HELP mysocket_edge_requests_total HTTP requests.
# TYPE mysocket_edge_requests_total counter
mysocket_edge_requests_total{socket_id="s1",answered_by="app",reason="",code_class="2xx"} 10
mysocket_edge_requests_total{socket_id="s1",answered_by="app",reason="",code_class="5xx"} 2
mysocket_edge_requests_total{socket_id="s1",answered_by="edge",reason="no-tunnel",code_class="5xx"} 3
mysocket_edge_requests_total{socket_id="s1",answered_by="edge",reason="rate-limited",code_class="4xx"} 4
mysocket_edge_requests_total{socket_id="s1",answered_by="app",reason="",code_class="4xx"} 5
mysocket_edge_requests_total{socket_id="s1",answered_by="edge",reason="https-redirect",code_class="3xx"} 6
mysocket_edge_bytes_total{socket_id="s1",direction="in"} 100
mysocket_edge_bytes_total{socket_id="s1",direction="out"} 2000
mysocket_edge_request_duration_seconds_bucket{socket_id="s1",le="0.005"} 1
mysocket_edge_active_connections{socket_id="s1"} 3
mysocket_edge_tunnels{socket_id="s1"} 2
mysocket_edge_certificate_expiry_timestamp_seconds{name="*.edge.example.com"} 1.7e+09
mysocket_edge_account_connections{account_id="u1"} 7
mysocket_edge_requests_total{socket_id="s\\"2\\\\",answered_by="app",reason="",code_class="2xx"} 1
go_goroutines 12
'''


def test_promtext_reads_only_the_families_asked_for_and_unescapes_labels():
    got = promtext.samples(TEXT, ["mysocket_edge_tunnels", "mysocket_edge_requests_total"])
    assert ("mysocket_edge_tunnels", {"socket_id": "s1"}, 2.0) in got
    assert len([g for g in got if g[0] == "mysocket_edge_requests_total"]) == 7
    assert {"socket_id": 's"2\\', "answered_by": "app", "reason": "", "code_class": "2xx"} in [
        g[1] for g in got]
    assert promtext.samples(TEXT, ["mysocket_edge_request_duration_seconds"]) == []   # exact names
    assert promtext.samples("go_goroutines 12\ngo_goroutines{x=\"1\"} NaN\nbad{x=1} 2\n",
                            ["go_goroutines", "bad"]) == [("go_goroutines", {}, 12.0)]


@pytest.mark.parametrize("labels, error", [
    ({"code_class": "2xx", "answered_by": "app"}, False),
    ({"code_class": "4xx", "answered_by": "app"}, False),       # the app's own 404
    ({"code_class": "3xx", "answered_by": "edge"}, False),      # the edge's https redirect
    ({"code_class": "4xx", "answered_by": "edge"}, True),
    ({"code_class": "5xx", "answered_by": "app"}, True),
    ({"code_class": "5xx", "answered_by": "edge"}, True),
])
def test_what_is_an_error(labels, error):
    assert is_error(labels) == error


def test_reduce_sums_per_socket():
    r = reduce(TEXT)
    assert r.totals["s1"] == [30.0, 9.0, 100.0, 2000.0]
    assert r.active == {"s1": 3.0} and r.tunnels == {"s1": 2.0}
    assert r.certificates == {"*.edge.example.com": 1.7e9} and r.accounts == {"u1": 7.0}


def line(sid: str, ok: float, err: float = 0) -> str:
    return ('mysocket_edge_requests_total{{socket_id="{0}",answered_by="app",reason="",code_class="2xx"}} {1}\n'
            'mysocket_edge_requests_total{{socket_id="{0}",answered_by="app",reason="",code_class="5xx"}} {2}\n'
            ).format(sid, ok, err)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_rings_rates_resets_bounds_and_forgotten_sockets():
    clock = Clock()
    s = Sampler(fetch=None, interval=60, clock=clock)     # 15 min / 60 s: 16 points kept
    s.take(line("a", 500))                                # the baseline: not an interval
    assert s.series("a") == []
    clock.now += 10
    s.take(line("a", 600, 10) + line("b", 5))             # b appeared: counted from 0
    assert s.series("a") == [Point(1010.0, 10.0, 11.0, 1.0, 0.0, 0.0)]   # (610 - 500) / 10 s
    assert s.series("b")[0].requests == 0.5
    clock.now += 10
    s.take(line("a", 30))                                 # went down: the data plane restarted
    assert s.series("a")[-1].requests == 3.0 and s.series("a")[-1].errors == 0.0
    assert s.series("b") == []                            # its series are gone: so is its ring
    for _ in range(40):
        clock.now += 60
        s.take(line("a", 30))
    assert len(s.series("a")) == 16 == s.points_kept     # bounded
    assert all(p.at >= clock.now - 900 for p in s.series("a"))


def test_sampler_says_why_it_has_no_figures():
    async def broken():
        raise OSError("connection refused")

    async def good():
        return line("a", 3).encode()

    s = Sampler(broken, 1)
    asyncio.run(s.sample())
    assert s.status == "cannot read the data plane's metrics: connection refused"
    s._fetch = good
    asyncio.run(s.sample())
    assert s.status == "ok" and s.latest.totals == {"a": [3.0, 0.0, 0.0, 0.0]}


def test_sessions_signed_expiring_revocable():
    clock = Clock()
    s = Sessions(b"secret" * 8, lifetime=60, clock=clock)
    value = s.issue("11111111-2222-3333-4444-555555555555")
    session = s.check(value)
    assert session.user_id == "11111111-2222-3333-4444-555555555555"
    user, sid, exp, mac = value.split(".")
    for forged in ("22222222-2222-3333-4444-555555555555.{}.{}.{}".format(sid, exp, mac),
                   "{}.{}.{}.{}".format(user, sid, int(exp) + 999, mac), value + "x", "", None,
                   Sessions(b"other" * 8, 60, clock).issue(user)):
        assert s.check(forged) is None, forged
    clock.now += 61
    assert s.check(value) is None                          # expired
    clock.now -= 61
    s.revoke(session)
    assert s.check(value) is None                          # signed out
    assert s.check(s.issue(user)) is not None


def test_csrf_tokens_are_bound():
    s = Sessions(b"secret" * 8, 60)
    assert s.csrf_ok("sid1", s.csrf("sid1"))
    assert not s.csrf_ok("sid2", s.csrf("sid1"))
    assert not s.csrf_ok("sid1", None) and not s.csrf_ok("", s.csrf(""))
    assert s.csrf("x") != Sessions(b"other" * 8, 60).csrf("x")


def test_pages_escape_what_accounts_wrote():
    out = render.table(["h"], [[render.esc('<script>alert("x")</script>')]])
    assert "<script>" not in out and "&lt;script&gt;" in out
    fig = render.chart('"><img src=x>', [Point(990, 10, 2.0, 1.0, 0, 0)], "small", 1000)
    assert "<img" not in fig and 'data-requests="20"' in fig and 'data-errors="10"' in fig


def test_each_tls_name_shows_the_certificate_that_serves_it():
    state = State()
    user = User("u1", "u1", "A", "a@example.com", "scrypt$secret", "ssh-ed25519 AAAA")
    state.load(1, [user], [Socket("s1", "u1", "web", "web.edge.example.com", "http"),
                           Socket("s2", "u1", "shop", "shop.other.example.com", "https"),
                           Socket("s3", "u1", "db", "db.edge.example.com", "tcp", tcp_port=20001)], [])
    sampler = Sampler(None, 1, clock=Clock())
    sampler.latest.certificates = {"*.edge.example.com": 1000 + 30 * 86400,
                                   "internal-ca": 1000 + 3650 * 86400}
    out = views.certificates(views.Sources(state, None, sampler, Limits(), clock=Clock()), [user])
    rows = out.split("<tr>")[2:]
    assert len(rows) == 2                                  # the tcp socket has no certificate
    assert "web.edge.example.com" in rows[0] and "*.edge.example.com" in rows[0] and "30 days" in rows[0]
    assert "shop.other.example.com" in rows[1] and "internal CA" in rows[1] and "3650 days" in rows[1]
    assert "scrypt" not in out and "AAAA" not in out


def test_no_sampling_when_switched_off():
    s = Sampler(None, 0)
    s.start()
    assert "off" in s.status and s.points_kept == 0
