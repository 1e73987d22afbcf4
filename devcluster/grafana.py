"""The Grafana dashboards' queries (charts/mysocketd/dashboards/*.json) and the metric names they use.

No Grafana package is in Debian, so the dashboards are checked against what the processes really
export (tests/controller/test_metrics.py scrapes a real mysocketd and a real edge): every metric a
query names must be in a scrape. Pure functions, tested in tests/unit/test_grafana_queries.py.

The names are read from PromQL by removing what is not a metric name: strings, label matchers
(``{...}``), ranges (``[...]``), grouping label lists (``by (...)``, ``on (...)``...), numbers and
keywords; what is left and is not a function call is a metric. Grafana's ``label_values(metric,
label)`` names its metric first.
"""

import json
import re
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[1] / "charts" / "mysocketd" / "dashboards"

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(?:([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,)?\s*\w+\s*\)")
_NAME = re.compile(r"[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set:
    """The metric names a PromQL expression (or a Grafana variable query) reads."""
    expr = _STRINGS.sub('""', expr)
    expr = _LABEL_VALUES.sub(lambda m: m.group(1) or "", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _GROUPING.sub(" ", expr)
    expr = re.sub(r"\$\w+", " ", expr)                       # Grafana variables ($__rate_interval, ...)
    names = set()
    for m in _NAME.finditer(expr):
        rest = expr[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue                                          # a function or an operator
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue                                          # the exponent or unit of a number (1e3)
        names.add(word)
    return names


def queries(dashboard: dict) -> list:
    """Every query of a dashboard: its panels' targets (rows' nested panels too) and its variables'."""
    found = []

    def walk(panels):
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            found.append(q["query"] if isinstance(q, dict) else q)
    return found


def dashboards(directory: Path = DASHBOARDS) -> dict:
    """{file name: dashboard} of every dashboard the chart provisions."""
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def used_metrics(directory: Path = DASHBOARDS) -> dict:
    """{metric name: [(file, query), ...]} over every dashboard's queries."""
    out = {}
    for name, board in dashboards(directory).items():
        for q in queries(board):
            for metric in metric_names(q):
                out.setdefault(metric, []).append((name, q))
    return out
