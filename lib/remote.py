"""Remote calls that never hold the decision loop for long.

One thread decides, one Service at a time, with no locks; but a call to the
Mysocket API or the apiserver can hang for its whole timeout (10 s and more),
and while it hangs every other Service would wait. So each call made on a
Service's behalf runs on a small thread pool, and its reconcile waits for it
at most `budget` seconds in all. A call still running after that raises
`Pending`: that reconcile ends there, the loop goes on with other Services,
and when the call finishes its outcome is kept and the Service is queued
again. Reconciles are idempotent, so the next run makes the same call, gets
the kept outcome at once (nothing is sent twice), and carries on from there.

One call serves every Service: the list of the account's sockets. It is made
once (`shared`) for whoever needs it while it runs, each waiting within its
own budget and each queued again when it ends; a caller that must see a
newer list than the one running asks under another name.

A write checks the leadership fence twice: when it is decided, and again
(`guard`) on the worker just before it is sent, so one that waited for a
free worker past the renew deadline is never sent.

The budget is short (a few milliseconds in mysocketd), and none at all while
other Services are due (`hurry`): a burst of Services then has up to
`workers` calls on the way at once instead of one after the other, and the
loop never waits on the network while it has something else to do. A call that ends after its
budget calls `notify()` (the work queue's wake-up), so the loop collects its
outcome and runs that Service again at once, not on its next periodic turn.

Only the loop thread ever touches the kept outcomes, the caches and the
supervisor: a worker thread runs the call and nothing else (and `notify`). While a Service
has a call running it is not reconciled again ("one decision at a time per
Service" holds); `busy(key)` says so.
"""

import concurrent.futures
import time

SHARED = ("", "(shared)")           # the key a shared call is kept under


class Pending(Exception):
    """The call is still running; this Service is queued again when it ends."""


class Remote:
    def __init__(self, *, workers=8, budget=0.5, clock=time.monotonic, notify=None, hurry=None):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remote")
        self.budget = budget
        self.clock = clock
        self.notify = notify        # called on the worker when a call that went Pending ends
        self.hurry = hurry          # hurry(): other Services are due now, so a reconcile waits for nothing
        self._key = None
        self._deadline = 0.0
        self._running = {}          # key -> {ident: (generation, Future)}
        self._done = {}             # key -> {ident: Future that ended, kept for the next run of key}
        self._generation = 0        # forget() of everything: outcomes of older calls are dropped
        self._waiting = {}          # shared ident -> keys to queue again when it ends
        self._released = set()      # keys whose shared call ended on someone else's reconcile

    def begin(self, key):
        """A reconcile of `key` starts: its calls share one budget."""
        self._key = key
        self._deadline = self.clock() + (0.0 if self.hurry is not None and self.hurry() else self.budget)

    def call(self, ident, fn, *args, guard=None, **kwargs):
        """fn(*args, **kwargs), or its kept outcome; Pending if it is still running after the budget.

        `ident` names the call among this Service's calls (same ident = same call on a re-run);
        `guard()`, if given, runs on the worker right before fn and may raise instead (the fence).
        """
        future = _pop(self._done, self._key, ident)
        if future is None:
            running = self._running.get(self._key, {}).get(ident)
            if running is not None:
                if not (running[1].done() and running[0] == self._generation):
                    raise Pending(ident)
                return _pop(self._running, self._key, ident)[1].result()    # ended, not collected yet
            future = self.pool.submit(_guarded, guard, fn, args, kwargs)
            try:
                future.exception(timeout=max(0.0, self._deadline - self.clock()))
            except concurrent.futures.TimeoutError:
                self._running.setdefault(self._key, {})[ident] = (self._generation, future)
                self._on_done(future)
                raise Pending(ident) from None
        return future.result()

    def _on_done(self, future):
        if self.notify is not None:
            future.add_done_callback(lambda _: self.notify())

    def shared(self, ident, fn):
        """fn(), one call for every reconcile that asks for `ident` while it runs; Pending as in `call`."""
        future = _pop(self._done, SHARED, ident)
        if future is None:
            running = self._running.get(SHARED, {}).get(ident)
            if running is None or running[0] != self._generation:
                running = self._running.setdefault(SHARED, {})[ident] = (self._generation, self.pool.submit(fn))
                self._on_done(running[1])
            try:
                running[1].exception(timeout=max(0.0, self._deadline - self.clock()))
            except concurrent.futures.TimeoutError:
                self._waiting.setdefault(ident, set()).add(self._key)
                raise Pending(ident) from None
            future = _pop(self._running, SHARED, ident)[1]
            self._released |= self._waiting.pop(ident, set())     # the others waiting for it go again
        return future.result()

    def drop_shared(self):
        """Forget the kept outcomes of shared calls (a newer one is needed now)."""
        self._done.pop(SHARED, None)

    def busy(self, key):
        """A call of key's still runs (one that ended is handed to its next run at once)."""
        return any(not future.done() for _, future in self._running.get(key, {}).values())

    def collect(self):
        """Keep the outcomes of calls that ended; return the keys to queue again."""
        keys, self._released = self._released, set()
        for key, calls in list(self._running.items()):
            for ident, (generation, future) in list(calls.items()):
                if not future.done():
                    continue
                _pop(self._running, key, ident)
                if generation == self._generation:
                    self._done.setdefault(key, {})[ident] = future
                if key == SHARED:
                    keys |= self._waiting.pop(ident, set())
                else:
                    keys.add(key)
        return keys

    def done_with(self, key):
        """A reconcile of key finished: outcomes it did not ask for again are stale."""
        self._done.pop(key, None)

    def forget(self):
        """Drop every kept outcome, and those of calls still running: a new leader looks again instead."""
        self._done.clear()
        self._generation += 1

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


def _pop(table, key, ident):
    """table[key].pop(ident), and key's entry gone once it holds nothing: both tables stay as small as
    what is running or kept, whatever a burst went through."""
    calls = table.get(key)
    if not calls:
        return None
    value = calls.pop(ident, None)
    if not calls:
        del table[key]
    return value


def _guarded(guard, fn, args, kwargs):
    if guard is not None:
        guard()
    return fn(*args, **kwargs)


class Direct:
    """The same interface with no threads: the call is made there and then (tests, one-off tools)."""

    def begin(self, key):
        pass

    def call(self, ident, fn, *args, guard=None, **kwargs):
        return _guarded(guard, fn, args, kwargs)

    def shared(self, ident, fn):
        return fn()

    def drop_shared(self):
        pass

    def busy(self, key):
        return False

    def collect(self):
        return set()

    def done_with(self, key):
        pass

    def forget(self):
        pass

    def close(self):
        pass
