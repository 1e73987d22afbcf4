"""The traffic probe's bookkeeping, with a fake clock and a fake check (no network)."""

import concurrent.futures

import pytest

from lib.probe import Prober, verdict


class Instant(concurrent.futures.Executor):
    """Runs the check at once, so the test decides time, not a thread."""

    def submit(self, fn, *args):
        f = concurrent.futures.Future()
        f.set_result(fn(*args))
        return f


def make(answers):
    clock = [0.0]
    calls = []

    def check(url, dnsname, timeout):
        calls.append(dnsname)
        return answers[dnsname]

    p = Prober("http://127.0.0.1:8000/", interval=10, failures=2, clock=lambda: clock[0], check=check)
    p.pool = Instant()
    return p, clock, calls


def test_two_failures_in_a_row_make_a_tunnel_stale_and_one_success_resets():
    answers = {"a.edge": True, "b.edge": False}
    p, clock, calls = make(answers)
    targets = {("ns", "a"): "a.edge", ("ns", "b"): "b.edge"}
    assert p.stale(targets) == [] and calls == []            # the first probe waits one interval
    clock[0] = 10
    assert p.stale(targets) == []                            # probes sent (instantly answered)
    clock[0] = 20
    assert p.stale(targets) == []                            # b failed once; probes sent again
    clock[0] = 30
    assert p.stale(targets) == [("ns", "b")]                 # b failed twice
    assert calls.count("b.edge") == 2
    answers["b.edge"] = True
    clock[0] = 40
    assert p.stale(targets) == [] and calls.count("b.edge") == 2   # two intervals for the new child
    clock[0] = 50
    assert p.stale(targets) == [] and calls.count("b.edge") == 3


def test_keys_that_disappear_are_forgotten():
    p, clock, calls = make({"a.edge": False})
    clock[0] = 10
    p.stale({("ns", "a"): "a.edge"})
    p.stale({})
    assert p._pending == {} and p._next == {} and p._failures == {}


def test_unknown_answers_neither_count_nor_reset():
    answers = {"a.edge": False}
    p, clock, calls = make(answers)
    targets = {("ns", "a"): "a.edge"}
    p.stale(targets)                                         # the first probe waits one interval
    clock[0] = 10
    p.stale(targets)                                         # sent: "no tunnel" once
    answers["a.edge"] = None                                 # then the probe's own network trouble, twice
    clock[0] = 20
    assert p.stale(targets) == []
    clock[0] = 30
    assert p.stale(targets) == []
    answers["a.edge"] = False
    clock[0] = 40
    assert p.stale(targets) == []
    clock[0] = 50
    assert p.stale(targets) == [("ns", "a")]                 # the second real "no tunnel"


@pytest.mark.parametrize("status, header, result", [
    (200, None, True), (502, None, True), (503, None, True), (504, None, True),   # the app's own answers
    (502, "no-tunnel", False), (502, " No-Tunnel ", False),
    (404, "unknown-host", None), (401, "unauthorized", None), (429, "rate-limited", None),
    (503, "unavailable", None), (502, "upstream-failed", None), (504, "timeout", None),
])
def test_only_the_edges_own_no_tunnel_blames_the_tunnel(status, header, result):
    assert verdict(status, header) is result
