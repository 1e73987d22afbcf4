"""Figure 5: how long an outage lasts, for the three things that fail.

All three use the Services bench.expose left exposed, and each run starts
only once every tunnel is "up" again in the controller's own metric (a child
counts as up after it stayed alive 2 s), so one run's back-off never leaks
into the next (the ssh kills, which each hit another Service, only wait for
the victim to have been up 2.5 s).

- ssh child: SIGKILL one child (a different Service each run, each child up
  for at least 2.5 s), then time until that Service answers again. The probe
  first sees it go down, so a request that slipped through before the kill
  landed cannot end the run early. A random pause before each kill spreads
  the kills over the phase of the controller's 0.5 s supervision tick.
- edge: EdgeProcess.restart() (SIGTERM, then the same ports and data dir),
  timed from the call until every Service answers again; the edge's own
  restart time is reported beside it.
- controller: SIGTERM (it stops its children, deletes nothing remote), start
  again, until every Service answers; then the account's sockets on the edge
  are counted: one per Service, any extra is a duplicate.
"""

import collections
import datetime
import random
import signal
import time

import psutil

from bench import probe, stack
from bench.stack import sockets

def wait_settled(env):
    stack.wait_settled(env.controller, len(env.dnsnames))


def child_of(env, name):
    needle = f":{env.services[name]}:8000"
    for p in env.controller.ssh_children():
        try:
            if any(a.endswith(needle) for a in p.cmdline()):
                return p
        except psutil.NoSuchProcess:
            continue
    return None


def ssh_kill(env, results, runs):
    seconds = []
    wait_settled(env)
    for name in list(env.dnsnames)[:runs]:      # a different Service each run: its child is long up
        child = child_of(env, name)
        while time.time() - child.create_time() < 2.5:
            time.sleep(0.1)
        # The controller looks at its children every 0.5 s; a random pause keeps the kills
        # from falling into the same phase of that tick run after run.
        time.sleep(random.uniform(0.0, 0.5))
        host = env.dnsnames[name]
        t0 = time.monotonic()
        child.send_signal(signal.SIGKILL)
        probe.wait_down(env.edge.http_port, host, 10)
        t1 = probe.wait_answer(env.edge.http_port, host, 30, expect=env.expected(name))
        seconds.append(t1 - t0)
    results.add("recovery.ssh_kill", seconds, "s", target=2.0,
                note="SIGKILL of one ssh child until its Service answers again")


def _all_answer(env, timeout=60):
    wanted = {name: env.expected(name) for name in env.dnsnames}
    hosts = dict(env.dnsnames)
    done = probe.wait_all(env.edge.http_port, wanted, timeout, names=lambda: hosts)
    return max(done.values())


def edge_restart(env, results, runs):
    seconds, restart = [], []
    for _ in range(runs):
        wait_settled(env)
        t0 = time.monotonic()
        env.edge.restart()
        restart.append(time.monotonic() - t0)
        seconds.append(_all_answer(env) - t0)
    results.add("recovery.edge_restart_all_answer", seconds, "s",
                note=f"EdgeProcess.restart() until all {len(env.dnsnames)} Services answer")
    results.add("recovery.edge_restart_itself", restart, "s", note="stop + start of the edge process alone")


def controller_restart(env, results, runs):
    seconds, duplicates, parts = [], [], {"stop": [], "interpreter": [], "client_setup": [], "to_all": []}
    prefix = f"mysocketd/{env.cluster}/{env.namespace}/"
    for _ in range(runs):
        wait_settled(env)
        t0 = time.monotonic()
        env.controller.stop()
        stopped, stopped_wall = time.monotonic(), time.time()
        env.controller.start(wait_ready=False)
        done = _all_answer(env)
        seconds.append(done - t0)
        names = collections.Counter(s["name"] for s in sockets(env.edge, env.account)
                                    if s["name"].startswith(prefix))
        duplicates.append(sum(n - 1 for n in names.values()) + (len(env.dnsnames) - len(names)))
        marks = _start_marks(env.controller, stopped_wall)
        if marks:
            parts["stop"].append(stopped - t0)
            parts["interpreter"].append(marks[0] - stopped_wall)
            parts["client_setup"].append(marks[1] - marks[0])
            parts["to_all"].append(done - stopped - (marks[1] - stopped_wall))
    n = len(env.dnsnames)
    results.add("recovery.controller_restart_all_answer", seconds, "s",
                note=f"SIGTERM, start again, until all {n} Services answer")
    results.add("recovery.controller_restart_duplicate_sockets", duplicates, "count",
                note="extra (or missing) sockets of this controller on the edge after the restart; want 0")
    notes = {"stop": "SIGTERM until the old process exited (children stopped)",
             "interpreter": "exec until the 'starting' log line (interpreter + imports)",
             "client_setup": "'starting' until 'listed N Services' (clients, login, first list)",
             "to_all": f"'listed' until all {n} answer (reconciles, ssh handshakes)"}
    for key, values in parts.items():
        results.add(f"recovery.controller_restart.part.{key}", values, "s", note=notes[key])


def _start_marks(controller, since):
    """Wall-clock stamps of the new run's 'starting' and first 'listed ... Services' log lines."""
    starting = listed = None
    for r in controller.log_records():
        stamp = r.get("time")
        try:
            t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except (TypeError, ValueError):
            continue
        if t < since - 0.001:
            continue
        if starting is None and r.get("message") == "starting":
            starting = t
        elif starting is not None and str(r.get("message", "")).startswith("listed "):
            listed = t
            break
    return (starting, listed) if starting and listed else None


def run(env, results, runs, restarts):
    ssh_kill(env, results, runs)
    edge_restart(env, results, restarts)
    controller_restart(env, results, restarts)
