"""Read the few series the dashboard needs out of the data plane's Prometheus text.

Why it is shaped this way: the data plane serves its metrics as Prometheus
text on its control socket (``GET /metrics``, edge/README.md lists them). The
dashboard needs a handful of families out of possibly hundreds of thousands of
lines (every socket has a histogram), so this reads only the lines of the
families it is asked for and skips the rest without parsing them: one pass,
no Python work on a line it does not want. Label values are unescaped
as the format says (``\\\\``, ``\\"``, ``\\n``). Pure, so it is tested without a
server (tests/edge/test_edge_dashboard_units.py).
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


def _fast_labels(text: str) -> dict:
    """Labels without any escape in them (what the edge's labels are: ids, names, small sets)."""
    if not text:
        return {}
    if "\\" in text:
        return _labels(text)
    out = {}
    for pair in text.rstrip(",").split('",'):
        key, sep, value = pair.partition('="')
        if not sep:
            raise ValueError("bad labels: " + text[:80])
        out[key.strip().lstrip(",")] = value[:-1] if value.endswith('"') else value
    return out


def samples(text: str, names: Iterable[str]) -> list:
    """``[(name, labels, value)]`` for every sample of the given metric names (exact names, so a
    histogram's series are asked for as ``x_bucket``, ``x_sum``, ``x_count``). Lines that do not
    parse are skipped: one odd line must not blind the dashboard. A line of another family
    costs one ``startswith``."""
    wanted = tuple(names)
    exact = set(wanted)
    out = []
    for line in text.split("\n"):
        if not line.startswith(wanted):
            continue
        head, _, value_text = line.rpartition("} ") if "{" in line else line.partition(" ")
        name, _, label_text = head.partition("{")
        if name not in exact:
            continue
        try:
            labels = _fast_labels(label_text)
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue
        if math.isnan(value):
            continue
        out.append((name, labels, value))
    return out
