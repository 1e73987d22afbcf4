"""The leader elector's decisions, driven by a fake apiserver and a fake clock (as client-go's
leaderelection_test.go): each case fails on a wrong state or a wrong number of API calls."""

import copy

import pytest
from lib.apierrors import Conflict, NotFound, Unreachable
from lib.leader import LEADING, STANDBY, UNCONFIRMED, Fence, Fenced, LeaderElector


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeRest:
    """One Lease in memory; resourceVersion checked on PUT; every call recorded; faults on demand."""

    def __init__(self, clock, holder=None, renew_time="t0"):
        self.clock = clock
        self.calls = []
        self.fail = None            # an exception to raise on the next calls
        self.slow = 0.0             # seconds a call takes (the fake clock moves)
        self.lease = None
        if holder is not None:
            self.lease = {"metadata": {"resourceVersion": "1"},
                          "spec": {"holderIdentity": holder, "leaseDurationSeconds": 10, "renewTime": renew_time}}

    def json(self, method, path, body=None, **_):
        self.calls.append(method)
        self.clock.now += self.slow
        if self.fail is not None:
            raise self.fail
        if method == "GET":
            if self.lease is None:
                raise NotFound(status=404)
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise Conflict(status=409)
            self.lease = dict(body, metadata={"resourceVersion": "1"})
            return self.lease
        if method == "PUT":
            if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
                raise Conflict(status=409)
            version = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
            self.lease = dict(body, metadata={"resourceVersion": version})
            return self.lease
        raise AssertionError(method)

    def writes(self):
        return [c for c in self.calls if c != "GET"]


def elector(rest, clock, fit=lambda: True):
    return LeaderElector(rest, "mysocket", "mysocketd", identity="me", lease_seconds=10, renew_deadline=7,
                         renew_every=2, retry_every=1, clock=clock, fit=fit)


def test_no_lease_is_created_and_led_with_one_get_and_one_post():
    clock = Clock()
    rest = FakeRest(clock)
    e = elector(rest, clock)
    e.step()
    assert e.state() == LEADING and rest.calls == ["GET", "POST"]
    assert rest.lease["spec"]["holderIdentity"] == "me"


def test_a_fresh_lease_of_another_holder_is_left_alone():
    clock = Clock()
    rest = FakeRest(clock, holder="other")
    e = elector(rest, clock)
    for _ in range(5):
        e.step()
        clock.now += 1
    assert e.state() == STANDBY and rest.writes() == []


def test_another_holders_lease_is_taken_only_after_it_stayed_unchanged_for_the_lease_duration():
    clock = Clock()
    rest = FakeRest(clock, holder="other")
    e = elector(rest, clock)
    e.step()
    clock.now += 9.9
    e.step()
    assert e.state() == STANDBY and rest.writes() == []
    clock.now += 0.2
    e.step()
    assert e.state() == LEADING and rest.writes() == ["PUT"]
    assert rest.lease["spec"]["holderIdentity"] == "me" and rest.lease["spec"]["leaseTransitions"] == 1


def test_a_renewed_holder_is_never_taken_over():
    clock = Clock()
    rest = FakeRest(clock, holder="other", renew_time="t0")
    e = elector(rest, clock)
    for i in range(30):
        rest.lease["spec"]["renewTime"] = f"t{i}"          # the other holder renews every second
        e.step()
        clock.now += 1
    assert e.state() == STANDBY and rest.writes() == []


def test_a_leader_that_cannot_renew_stops_writing_at_the_renew_deadline_but_keeps_its_tunnels():
    clock = Clock()
    rest = FakeRest(clock)
    e = elector(rest, clock)
    fence = Fence(e)
    e.step()
    rest.fail = Unreachable("apiserver unreachable")
    clock.now += 6.9
    e.step()
    assert e.state() == LEADING and fence.is_open()
    clock.now += 0.2                                    # 7.1 s after the last renew was sent
    assert e.state() == UNCONFIRMED                     # no call needed to know it
    with pytest.raises(Fenced):
        fence.check()
    rest.fail = None
    e.step()                                            # the renew works again: confirmed, writes allowed
    assert e.state() == LEADING and fence.is_open()


def test_an_unconfirmed_leader_that_sees_another_holder_stands_by():
    clock = Clock()
    rest = FakeRest(clock)
    e = elector(rest, clock)
    e.step()
    clock.now += 20                                     # frozen (SIGSTOP) longer than the lease
    assert e.state() == UNCONFIRMED                     # before it even looks: no write on a stale view
    rest.lease["spec"].update(holderIdentity="other", renewTime="t9")
    e.step()
    assert e.state() == STANDBY and rest.writes() == ["POST"]


def test_the_deadline_counts_from_when_the_renew_was_sent():
    clock = Clock()
    rest = FakeRest(clock)
    e = elector(rest, clock)
    rest.slow = 3.0                                     # GET and POST take 3 s each
    e.step()
    assert e.state() == LEADING
    clock.now += 1.1                                    # 7.1 s after the GET was sent, 1.1 s after the answer
    assert e.state() == UNCONFIRMED


def test_a_leader_not_fit_to_lead_releases_the_lease_and_stops_writing_at_once():
    clock = Clock()
    rest = FakeRest(clock)
    fit = [True]
    e = elector(rest, clock, fit=lambda: fit[0])
    e.step()
    fit[0] = False
    e.step()
    assert rest.calls == ["GET", "POST", "GET", "PUT"]
    assert rest.lease["spec"]["holderIdentity"] == ""
    assert e.state() == UNCONFIRMED and not Fence(e).is_open()
    e.step()
    assert e.state() == UNCONFIRMED and rest.writes() == ["POST", "PUT"]   # does not take it back while unfit
    fit[0] = True
    e.step()
    assert e.state() == LEADING


def test_a_replica_not_fit_to_lead_never_takes_a_free_lease():
    clock = Clock()
    rest = FakeRest(clock)
    e = elector(rest, clock, fit=lambda: False)
    for _ in range(3):
        e.step()
        clock.now += 11
    assert e.state() == STANDBY and rest.writes() == []


def test_a_lost_race_for_the_lease_is_not_leadership():
    clock = Clock()
    rest = FakeRest(clock, holder="other")
    e = elector(rest, clock)
    e.step()
    clock.now += 11
    rest.lease["metadata"]["resourceVersion"] = "7"     # someone else wrote it between our GET and PUT

    original = rest.json

    def racing(method, path, body=None, **kw):
        result = original(method, path, body=body, **kw)
        if method == "GET":
            rest.lease["metadata"]["resourceVersion"] = "8"
        return result

    rest.json = racing
    e.step()
    assert e.state() == STANDBY


def test_without_an_elector_the_fence_is_always_open():
    Fence().check()
    assert Fence().is_open()


def test_the_renew_deadline_must_sit_between_the_renew_period_and_the_lease():
    with pytest.raises(ValueError):
        LeaderElector(None, "ns", "l", lease_seconds=10, renew_deadline=10)
    with pytest.raises(ValueError):
        LeaderElector(None, "ns", "l", lease_seconds=10, renew_deadline=1, renew_every=2)
