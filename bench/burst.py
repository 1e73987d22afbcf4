"""Figure 3 (and the growth step of figure 4): many Services annotated at once.

The stand-ins listen on the Services' ClusterIPs (chosen up front) before the
clock starts; the clock starts with ONE `kubectl apply` that creates all the
Services carrying the annotation and stops when the last one answers through
the edge. (Creating, not modifying: kubectl's client-side apply of 100
EXISTING Services spends ~0.2 s of its own CPU per object on the three-way
merge, ~20 s in all, which would measure kubectl, not the controller.) Meanwhile a thread
samples the controller's RSS every 50 ms (its peak is the figure), and
psutil's cpu_times of the controller (its own process, not its ssh children)
and of the edge give the CPU seconds the burst cost each of them.

The edge's log says where the time went: when the first and the last socket
were created (the controller reconciles one Service at a time, so the spread
is its throughput) and when the last forward came up.
"""

import threading
import time

import psutil

from bench import probe, timeline
from bench.stack import cpu_seconds, edge_cpu_seconds, dnsnames, forwarded, tree_memory


class PeakRss(threading.Thread):
    def __init__(self, pid, every=0.05):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            self._halt.wait(self.every)

    def stop(self):
        self._halt.set()
        self.join()
        return self.peak / 2**20


def annotate_all(scene, names, timeout=240):
    """Create `names` annotated in one kubectl apply (stand-ins already listening); wait until all answer.

    Returns a dict of figures.
    """
    scene.services.update(scene.stack.stand_ins(scene.namespace, names))
    pid = scene.controller.proc.pid
    sampler = PeakRss(pid)
    sampler.start()
    cpu0, edge0 = cpu_seconds(pid), edge_cpu_seconds(scene.edge)
    start = time.time()
    t0 = time.monotonic()
    apply_s = scene.stack.apply_services(scene.namespace, {n: scene.services[n] for n in names}, annotated=True)
    done = probe.wait_all(scene.edge.http_port, {n: scene.expected(n) for n in names}, timeout,
                          names=lambda: dnsnames(scene.edge, scene.account, scene.cluster, scene.namespace),
                          forwarded=lambda: forwarded(scene.edge))
    all_answer = max(done.values()) - t0
    cpu = cpu_seconds(pid) - cpu0
    edge_cpu = edge_cpu_seconds(scene.edge) - edge0
    peak = sampler.stop()
    scene.dnsnames.update(dnsnames(scene.edge, scene.account, scene.cluster, scene.namespace))
    kids = scene.controller.ssh_children()
    ssh_rss, ssh_pss = tree_memory([p.pid for p in kids])
    figures = {"all_answer": all_answer, "kubectl_apply": apply_s, "controller_cpu": cpu, "edge_cpu": edge_cpu,
               "controller_peak_rss": peak, "ssh_rss_total": ssh_rss, "ssh_pss_total": ssh_pss,
               "ssh_children": len(kids)}
    figures.update(_where(scene, names, start))
    return figures


def _where(scene, names, start):
    events = timeline.edge_events(scene.edge.log_path)
    created, forward = [], []
    for name in names:
        mine = events.get(scene.dnsnames.get(name), {"created": [], "forward": []})
        created += [t - start for t in mine["created"] if t >= start - 0.001][:1]
        forward += [t - start for t in mine["forward"] if t >= start - 0.001][:1]
    if len(created) < 2 or not forward:
        return {}
    return {"first_socket_created": min(created), "last_socket_created": max(created),
            "last_forward_up": max(forward),
            "per_service_reconcile": (max(created) - min(created)) / (len(created) - 1)}
