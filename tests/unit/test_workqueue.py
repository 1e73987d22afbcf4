import threading

from lib.workqueue import WorkQueue


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_dedupes_and_keeps_the_earliest_due_time():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a", 5.0)
    q.add("a", 10.0)          # later: ignored
    q.add("b")
    q.add("b")
    assert len(q) == 2
    assert q.get(0) == "b"
    assert q.get(0) is None   # "a" not due yet
    q.add("a", 1.0)           # earlier: wins
    clock.now += 1.0
    assert q.get(0) == "a"
    clock.now += 10.0
    assert q.get(0) is None and len(q) == 0


def test_get_wakes_up_when_a_key_is_added():
    q = WorkQueue()
    threading.Timer(0.05, q.add, args=("x",)).start()
    assert q.get(timeout=5) == "x"


def test_get_times_out():
    assert WorkQueue().get(timeout=0.01) is None


def test_wake_returns_none_at_once():
    q = WorkQueue()
    threading.Timer(0.05, q.wake).start()
    assert q.get(timeout=5) is None


def test_ready_says_whether_a_key_is_due_now_without_taking_it():
    clock = Clock()
    q = WorkQueue(clock)
    assert not q.ready()
    q.add("a", 5.0)
    assert not q.ready()                # queued, not due: a reconcile may still wait for its call
    clock.now += 5.0
    assert q.ready() and q.ready()      # nothing taken
    assert q.get(0) == "a" and not q.ready()
