"""Figures 1 and 2: the floor and the expose latency, interleaved in one run.

Expose latency is what a user feels: from the moment `kubectl annotate`
starts until the first 200 through the edge, for a Service whose pods already
run. Each run uses a fresh Service (created and bound beforehand, not
annotated), so no run waits for the clean-up of the one before and the
controller is in the same state for all of them but the count of Services it
already carries (0..19, negligible). Floor and expose runs alternate, and
which one goes first alternates too, so that a slow moment of the machine
hits both alike; the ratio is taken per pair and of the medians.

The 20 Services stay exposed afterwards: the recovery figures use them.
"""

import time

from bench import probe, timeline
from bench.floor import Floor
from bench.stack import Scene, dnsnames


def setup(stack, edge, count, tag="expose", root=None):
    """A namespace of `count` Services not yet annotated and a controller (of `root`'s code, if given)."""
    account = stack.account(edge, f"acct-{tag}")
    ns = stack.namespace(tag)
    names = [f"svc{i:02d}" for i in range(count)]
    ips = stack.stand_ins(ns, names)
    stack.apply_services(ns, ips, annotated=False)
    controller = stack.controller(edge, account, ns, tag, root=root)
    return Scene(stack, edge, account, controller, ns, tag, ips)


def expose_once(env, name, timeout=30):
    start = time.time()
    t0 = time.monotonic()
    kubectl = env.stack.annotate(env.namespace, name, "true")
    deadline = t0 + timeout
    while name not in env.dnsnames:
        env.dnsnames.update(dnsnames(env.edge, env.account, env.cluster, env.namespace))
        if time.monotonic() > deadline:
            raise TimeoutError(f"no socket for {name} after {timeout}s")
        if name not in env.dnsnames:
            time.sleep(probe.POLL)
    t1 = probe.wait_answer(env.edge.http_port, env.dnsnames[name], deadline - time.monotonic(),
                           expect=env.expected(name))
    return {"start": start, "end": start + (t1 - t0), "seconds": t1 - t0, "kubectl": kubectl,
            "dnsname": env.dnsnames[name]}


def run(env, results, runs, before=None):
    """`before`: a scene whose controller runs the code before (make bench BENCH_BEFORE=<ref>), measured
    in the same rounds, so the before/after figures share the machine's moments."""
    floor = Floor(env.stack, env.edge, env.account)
    floors, exposes, befores = [], [], []
    for i, name in enumerate(list(env.services)[:runs]):
        pair = (floor.once, lambda n=name: expose_once(env, n))
        first, second = pair if i % 2 == 0 else pair[::-1]
        a, b = first(), second()
        f, e = (a, b) if i % 2 == 0 else (b, a)
        floors.append(f)
        exposes.append(e)
        if before is not None:
            befores.append(expose_once(before, name))
        print(f"  run {i + 1:2d}: floor {f['seconds']:.3f}s  expose {e['seconds']:.3f}s "
              f"(kubectl {e['kubectl']:.3f}s)" + (f"  before {befores[-1]['seconds']:.3f}s" if befores else ""),
              flush=True)
    if befores:
        results.add("expose.before.first_200", [b["seconds"] for b in befores], "s",
                    note="the same, by the code before (BENCH_BEFORE), in the same rounds")
    floor_s = [f["seconds"] for f in floors]
    expose_s = [e["seconds"] for e in exposes]
    results.add("floor.first_200", floor_s, "s")
    exp = results.add("expose.first_200", expose_s, "s", target=1.0)
    results.add("expose.ratio_to_floor_per_pair", [e / f for e, f in zip(expose_s, floor_s)], "x")
    floor_median = results.figures["floor.first_200"]["median"]
    results.add("expose.ratio_of_medians", [exp["median"] / floor_median], "x", target=2.0,
                note="median expose / median floor of the same run")
    after = results.add("expose.after_kubectl", [e["seconds"] - e["kubectl"] for e in exposes], "s",
                        note="from kubectl's exit (the annotation is stored) until the first 200")
    results.add("expose.after_kubectl_ratio_of_medians", [after["median"] / floor_median], "x",
                note="what the controller itself adds over the floor")
    _breakdown(env, results, floors, exposes)


def _breakdown(env, results, floors, exposes):
    """Split both into parts with the edge's log stamps (see bench.timeline)."""
    events = timeline.edge_events(env.edge.log_path)
    parts = {"floor": ([], [], []), "expose": ([], [], [])}
    kubectl, reaction = [], []
    for kind, runs in (("floor", floors), ("expose", exposes)):
        for r in runs:
            split = timeline.split(events, r["dnsname"], r["start"], r["end"])
            if split is None:
                continue
            for bucket, value in zip(parts[kind], split):
                bucket.append(value)
            if kind == "expose":
                kubectl.append(r["kubectl"])
                reaction.append(split[0] - r["kubectl"])
    results.add("floor.part.post_connect", parts["floor"][0], "s", note="start -> edge logged 'socket created'")
    results.add("expose.part.kubectl_annotate", kubectl, "s", note="the kubectl process itself")
    results.add("expose.part.controller_to_socket", reaction, "s",
                note="kubectl exit -> edge logged 'socket created' (watch, finalizer patch, POST /connect)")
    for kind in ("floor", "expose"):
        results.add(f"{kind}.part.socket_to_forward", parts[kind][1], "s",
                    note="'socket created' -> 'forward up' (ssh spawn, handshake, auth, -R)")
        results.add(f"{kind}.part.forward_to_200", parts[kind][2], "s",
                    note="'forward up' -> first 200 seen by the 20 ms probe")
