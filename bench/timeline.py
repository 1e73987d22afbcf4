"""Where the time of one exposure goes, read from the edge's own log.

The edge logs the two moments that split an exposure into parts a reader can
act on: "socket created: <dnsname>" (its Python API served the create; a
Python logging stamp, milliseconds) and "forward up: ... socket=<dnsname>" (its
Go data plane accepted an ssh client's -R; a Go log stamp, microseconds). The benchmark notes the wall
clock when it starts (before kubectl or POST /connect) and when the first 200
arrives. All are the same machine's clock, so the parts add up:

    start -> socket created -> forward up -> first 200

Reading the log afterwards costs the measured system nothing (no extra
probes while it runs).
"""

import datetime
import re

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
_GO_LINE = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) dataplane: (.*)$")
_CREATED = re.compile(r"socket created: (\S+)")
_FORWARD = re.compile(r"forward up: .* socket=(\S+)")


def _epoch(stamp):
    layout = "%Y-%m-%d %H:%M:%S,%f" if "-" in stamp else "%Y/%m/%d %H:%M:%S.%f"
    return datetime.datetime.strptime(stamp, layout).timestamp()


def edge_events(log_path):
    """{dnsname: {"created": [epoch...], "forward": [epoch...]}} from the edge's log."""
    events = {}
    try:
        text = open(log_path, errors="replace").read()
    except FileNotFoundError:
        return events
    for line in text.splitlines():
        m = _LINE.match(line) or _GO_LINE.match(line)
        if not m:
            continue
        for kind, pattern in (("created", _CREATED), ("forward", _FORWARD)):
            hit = pattern.search(m.group(2))
            if hit:
                events.setdefault(hit.group(1), {"created": [], "forward": []})[kind].append(_epoch(m.group(1)))
    return events


def split(events, dnsname, start, end):
    """(start->created, created->forward up, forward up->first 200) in seconds, or None if not logged.

    The first "created" and the first "forward up" after `start` are used; log
    stamps are truncated to the millisecond, so a part may read up to 1 ms short.
    """
    mine = events.get(dnsname)
    if not mine:
        return None
    created = next((t for t in mine["created"] if t >= start - 0.001), None)
    forward = next((t for t in mine["forward"] if t >= start - 0.001), None)
    if created is None or forward is None:
        return None
    return created - start, forward - created, end - forward
