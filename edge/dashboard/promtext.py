"""Read the few series the dashboard needs out of the data plane's Prometheus text.

Why it is shaped this way: the data plane serves its metrics as Prometheus
text on its control socket (``GET /metrics``, edge/README.md lists them). The
dashboard needs a handful of families out of possibly hundreds of thousands of
lines (every socket has a histogram), so this reads only the lines of the
families it is asked for and skips the rest without parsing them: one pass,
no regular expression on a line it does not want. Label values are unescaped
as the format says (``\\\\``, ``\\"``, ``\\n``). Pure, so it is tested without a
server (tests/edge/test_dashboard_units.py).
"""

import math
import re
from typing import Iterable

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _labels(text: str) -> dict:
    out, pos = {}, 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None:
            raise ValueError("bad labels: " + text[:80])
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def samples(text: str, names: Iterable[str]) -> list:
    """``[(name, labels, value)]`` for every sample of the given metric names (exact names, so a
    histogram's series are asked for as ``x_bucket``, ``x_sum``, ``x_count``). Lines that do not
    parse are skipped: one odd line must not blind the dashboard."""
    wanted = tuple(names)
    out = []
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name, rest = line[:brace], line[brace + 1:]
            close = rest.rfind("}")
            if close == -1:
                continue
            label_text, value_text = rest[:close], rest[close + 1:]
        else:
            name, _, value_text = line.partition(" ")
            label_text = ""
        if name not in wanted:
            continue
        try:
            labels = _labels(label_text)
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue
        if math.isnan(value):
            continue
        out.append((name, labels, value))
    return out
