"""lib.remote: a slow call holds up only its own Service, and is never sent twice."""

import threading
import time

import pytest

from devcluster.stack import wait_for
from lib.remote import Pending, Remote


class Call:
    """A remote call that blocks until released, counting how often it was really made."""

    def __init__(self, answer="created"):
        self.answer = answer
        self.release = threading.Event()
        self.made = 0

    def __call__(self, *args):
        self.made += 1
        self.release.wait(10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def remote():
    r = Remote(workers=4, budget=0.05)
    yield r
    r.close()


def test_a_fast_call_is_answered_at_once(remote):
    call = Call()
    call.release.set()
    remote.begin("a")
    assert remote.call("connect", call) == "created" and call.made == 1
    assert not remote.busy("a")


def test_a_slow_call_is_pending_then_its_outcome_is_kept_for_the_next_run(remote):
    slow = Call()
    remote.begin("a")
    with pytest.raises(Pending):
        remote.call("connect", slow)
    assert remote.busy("a") and not remote.busy("b")
    remote.begin("a")
    with pytest.raises(Pending):
        remote.call("connect", slow)                # still running: not sent a second time
    fast = Call()
    fast.release.set()
    remote.begin("b")
    assert remote.call("connect", fast) == "created"   # another Service is not held up
    slow.release.set()
    assert wait_for("the slow call to end", remote.collect) == {"a"}
    remote.begin("a")
    assert remote.call("connect", slow) == "created"
    assert slow.made == 1
    assert not remote.busy("a")


def test_a_failed_slow_call_raises_on_the_next_run(remote):
    slow = Call(answer=OSError("boom"))
    remote.begin("a")
    with pytest.raises(Pending):
        remote.call("delete", slow)
    slow.release.set()
    wait_for("the slow call to end", remote.collect)
    remote.begin("a")
    with pytest.raises(OSError, match="boom"):
        remote.call("delete", slow)


def test_one_budget_per_reconcile(remote):
    first, second = Call(), Call()
    remote.begin("a")
    with pytest.raises(Pending):
        remote.call("one", first)
    with pytest.raises(Pending):
        remote.call("two", second)                 # the budget is spent: not waited for again
    first.release.set()
    second.release.set()


def test_outcomes_from_before_a_change_of_leader_are_dropped(remote):
    slow = Call()
    remote.begin("a")
    with pytest.raises(Pending):
        remote.call("connect", slow)
    remote.forget()
    slow.release.set()
    assert wait_for("the slow call to end", remote.collect) == {"a"}
    remote.begin("a")
    again = Call()
    with pytest.raises(Pending):
        remote.call("connect", again)              # asked afresh, not answered from the old leader's call
    again.release.set()


def test_a_shared_call_is_made_once_for_every_service_that_waits_for_it(remote):
    listing = Call(answer=["s1"])
    for key in ("a", "b"):
        remote.begin(key)
        with pytest.raises(Pending):
            remote.shared("list #1", listing)
    assert not remote.busy("a") and not remote.busy("b")   # waiting for the list is no call of their own
    listing.release.set()
    assert wait_for("the list to end", remote.collect) == {"a", "b"}
    remote.begin("a")
    assert remote.shared("list #1", listing) == ["s1"] and listing.made == 1


def test_a_shared_call_that_ends_within_one_budget_lets_the_others_go(remote):
    listing = Call(answer=["s1"])
    remote.begin("a")
    with pytest.raises(Pending):
        remote.shared("list #1", listing)
    listing.release.set()
    remote.budget = 5.0
    remote.begin("b")
    assert remote.shared("list #1", listing) == ["s1"]
    assert remote.collect() == {"a"} and listing.made == 1


def test_a_newer_list_is_asked_for_under_another_name_and_old_ones_are_dropped(remote):
    old, new = Call(answer=["old"]), Call(answer=["new"])
    remote.begin("a")
    with pytest.raises(Pending):
        remote.shared("list #1", old)
    remote.begin("a")
    with pytest.raises(Pending):
        remote.shared("list #2", new)           # after an invalidation: not answered by the older list
    old.release.set()
    assert wait_for("the old list to end", remote.collect) == {"a"}
    new.release.set()
    assert wait_for("the new list to end", remote.collect) == {"a"}
    remote.drop_shared()                        # what Sockets.invalidate does
    remote.begin("a")
    again = Call(answer=["newest"])
    with pytest.raises(Pending):
        remote.shared("list #2", again)         # the kept outcome was dropped: a new call
    again.release.set()


def test_a_write_that_waited_for_a_worker_past_the_fence_is_not_sent():
    """Decided while leading, but every worker was busy; by the time one is free the fence closed."""
    from lib.leader import Fenced

    remote = Remote(workers=1, budget=0.05)
    try:
        busy, write = Call(), Call()
        leading = [True]

        def fence():
            if not leading[0]:
                raise Fenced("not a confirmed leader (unconfirmed)")

        remote.begin("a")
        with pytest.raises(Pending):
            remote.call("list", busy)
        remote.begin("b")
        fence()                                     # the decision was taken as a confirmed leader
        with pytest.raises(Pending):
            remote.call("delete", write, guard=fence)
        leading[0] = False                          # the renew deadline passes while it waits
        busy.release.set()
        write.release.set()
        wait_for("both calls to end", lambda: remote.collect() >= {"b"} or not remote.busy("b"))
        remote.begin("b")
        with pytest.raises(Fenced):
            remote.call("delete", write, guard=fence)
        assert write.made == 0
    finally:
        remote.close()


def test_a_call_that_ends_after_its_budget_wakes_the_loop_and_its_outcome_is_taken_at_once():
    """A short budget keeps the loop free; the Service goes again the moment its call ends, not on a tick."""
    woken = threading.Event()
    remote = Remote(workers=2, budget=0.0, notify=woken.set)
    try:
        call = Call()
        remote.begin("a")
        with pytest.raises(Pending):
            remote.call("connect", call)
        assert not woken.is_set() and remote.busy("a")
        call.release.set()
        assert woken.wait(5) and not remote.busy("a")
        remote.begin("a")
        assert remote.call("connect", call) == "created" and call.made == 1     # before any collect()
        assert remote.collect() == set()
    finally:
        remote.close()


def test_a_reconcile_waits_for_nothing_while_other_services_are_due():
    """A burst: with others due, the loop hands the call over and moves on (the budget is for a lone
    Service, whose fast call is then answered in the same reconcile)."""
    due = [True]
    r = Remote(workers=2, budget=5.0, hurry=lambda: due[0])
    try:
        call = Call()
        r.begin("a")
        started = time.monotonic()
        with pytest.raises(Pending):
            r.call("connect", call)
        assert time.monotonic() - started < 1.0     # not the 5 s budget
        call.release.set()
        due[0] = False
        fast = Call()
        fast.release.set()
        r.begin("b")
        assert r.call("connect", fast) == "created"
    finally:
        r.close()


def test_the_tables_keep_nothing_of_services_done_with(remote):
    call = Call()
    call.release.set()
    for key in ("a", "b", "c"):
        remote.begin(key)
        remote.call("connect", call)
        remote.done_with(key)
    assert remote._done == {} and remote._running == {}
