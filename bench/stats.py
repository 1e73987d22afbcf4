"""Figures: a name, samples, a unit -> median, p95, worst, n; the table; the machine.

Every figure the benchmark reports goes through `Results.add`, so the printed
table and bench/results/latest.json can never disagree. p95 is the
nearest-rank percentile (with 20 samples, the 19th smallest): no
interpolation between samples that were never observed. A target, when a
figure has one, is checked against the median and recorded as met or not,
never adjusted.
"""

import json
import math
import os
import platform
import statistics
import subprocess
import time


def summary(samples, unit):
    values = sorted(float(v) for v in samples)
    if not values:
        return {"median": None, "p95": None, "worst": None, "best": None, "unit": unit, "n": 0}
    p95 = values[max(0, math.ceil(0.95 * len(values)) - 1)]
    return {"median": round(statistics.median(values), 4), "p95": round(p95, 4),
            "worst": round(values[-1], 4), "best": round(values[0], 4), "unit": unit, "n": len(values)}


class Results:
    def __init__(self):
        self.figures = {}
        self.notes = []

    def add(self, name, samples, unit, *, target=None, note="", higher_is_better=False):
        """target: a number the median must stay under (or over, if higher_is_better)."""
        fig = summary(samples, unit)
        if note:
            fig["note"] = note
        if target is not None:
            fig["target"] = target
            m = fig["median"]
            fig["target_met"] = (m is not None and (m >= target if higher_is_better else m <= target))
        self.figures[name] = fig
        return fig

    def note(self, text):
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def table(self):
        lines = [f"{'figure':<46}{'median':>10}{'p95':>10}{'worst':>10}  {'unit':<6}{'n':>5}  target"]
        for name, f in self.figures.items():
            target = ""
            if "target" in f:
                target = f"{f['target']} {'MET' if f['target_met'] else 'MISSED'}"
            lines.append(f"{name:<46}{_fmt(f['median']):>10}{_fmt(f['p95']):>10}{_fmt(f['worst']):>10}  "
                         f"{f['unit']:<6}{f['n']:>5}  {target}")
        return "\n".join(lines)

    def write(self, path, **extra):
        path.parent.mkdir(parents=True, exist_ok=True)
        targets = {name: {"target": f["target"], "median": f["median"], "unit": f["unit"], "met": f["target_met"]}
                   for name, f in self.figures.items() if "target" in f}
        body = {**extra, "targets": targets, "figures": self.figures, "notes": self.notes}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
        tmp.replace(path)


def _fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def busy_percent(seconds=1.0):
    """Whole-machine CPU use right now (others' work included): a benchmark on a busy box says so."""
    import psutil
    return psutil.cpu_percent(interval=seconds)


def machine():
    """What the numbers were measured on; load average is the one at the start."""
    def version(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":")[1].strip()
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "loadavg_at_start": os.getloadavg(),
            "cpu_busy_percent_before_start": busy_percent(),
            "kernel": platform.release(), "python": platform.python_version(),
            "ssh": version(["ssh", "-V"]), "wrk": version(["wrk", "--version"]),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
