"""A work queue of Service keys: deduplicated, with per-key delays.

The watch thread adds keys; the controller's single loop takes them. A key is
in the queue at most once (a burst of MODIFIED events for one Service is one
reconcile), and `add(key, delay)` keeps the earliest due time, so a retry with
backoff never postpones work that an event asked for now. One loop taking
keys means no two reconciles of anything ever run at once: no locks in the
controller.
"""

import heapq
import itertools
import threading
import time


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._due = {}        # key -> due time of its live heap entry
        self._heap = []       # (due, seq, key); stale entries are skipped
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._woken = False

    def add(self, key, delay=0.0):
        due = self.clock() + delay
        with self._cond:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify()

    def wake(self):
        """Make a waiting get() return None now (the SIGTERM handler calls it)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def get(self, timeout):
        """The next due key, or None after `timeout` seconds without one, or on wake()."""
        deadline = self.clock() + timeout
        with self._cond:
            while True:
                if self._woken:
                    self._woken = False
                    return None
                self._drop_superseded()
                now = self.clock()
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                wait = deadline - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if wait <= 0:
                    return None
                self._cond.wait(wait)

    def ready(self):
        """Whether a key is due now: a reconcile then hands its calls over and waits for none of them."""
        with self._cond:
            self._drop_superseded()
            return bool(self._heap) and self._heap[0][0] <= self.clock()

    def _drop_superseded(self):
        """Pop heap entries an earlier add() superseded, so the top is a live one (called holding _cond)."""
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def __len__(self):
        with self._cond:
            return len(self._due)
