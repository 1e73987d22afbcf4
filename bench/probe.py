"""Asking the edge's HTTP front, fast: "does this name answer yet?".

A figure ends at the first 200 through the edge, so the probe decides how
precise it is: it polls every 20 ms, each attempt with a short timeout, over a
raw socket (a new connection per attempt, as a browser's first visit would),
and it checks the body too -- the backend answers with the Service's name, so
a 200 from the wrong Service does not count as an answer.
"""

import socket
import time

POLL = 0.02


def get(port, host, timeout=0.5):
    """(status, body) of GET / with Host: host through 127.0.0.1:port; (None, reason) on failure."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except OSError as e:
        return None, e.__class__.__name__
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, "bad answer"
    return status, body.decode(errors="replace")


def answers(port, host, expect=None):
    status, body = get(port, host)
    return status == 200 and (expect is None or body.strip() == expect)


def wait_answer(port, host, timeout, expect=None):
    """monotonic time of the first good answer; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        if answers(port, host, expect):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host} did not answer within {timeout:.0f}s (last: {get(port, host)})")
        time.sleep(POLL)


def wait_down(port, host, timeout):
    """monotonic time when host stops answering 200; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while get(port, host)[0] == 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host} still answers after {timeout:.0f}s")
        time.sleep(POLL)
    return time.monotonic()


def wait_all(port, wanted, timeout, names, forwarded=None, interval=0.05):
    """Wait until every key of `wanted` ({key: expected body}) answers through the edge.

    `names()` returns {key: host} for the keys that have a host by now (e.g. from
    the edge's socket list); it is called only while some key has none, or when
    a forwarded host is not known yet. `forwarded()`, if given, returns the set
    of hosts the edge has a tunnel for (/_admin/tunnels): only those are probed,
    so waiting for 300 names costs the edge one call per round instead of 300
    failing requests. Returns {key: monotonic time of its first answer}; raises
    TimeoutError saying how many are missing.
    """
    deadline = time.monotonic() + timeout
    hosts, done, foreign = {}, {}, set()
    while True:
        ready = forwarded() if forwarded else None
        if len(hosts) < len(wanted) and (ready is None or ready - set(hosts.values()) - foreign):
            hosts.update((k, h) for k, h in names().items() if k in wanted)
            if ready is not None:       # a forwarded host that is still unknown is someone else's
                foreign |= ready - set(hosts.values())
        for key, host in list(hosts.items()):
            if key not in done and (ready is None or host in ready) and answers(port, host, wanted[key]):
                done[key] = time.monotonic()
        if len(done) == len(wanted):
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted) - len(done)} of {len(wanted)} did not answer within "
                               f"{timeout:.0f}s ({len(hosts)} had a name)")
        time.sleep(interval if len(wanted) - len(done) > 5 else POLL)
