"""Figure 7: one ssh per Service (the design) against one multiplexed ssh for all of them.

Done by hand with the real ssh and the edge, no controller: 100 sockets are
created through the API, all forwarding to one backend address, and three
ways of carrying their 100 forwards are set side by side, in rotating order,
each with the controller's own ssh options (lib.sshargs):

  per_service     100 `ssh -N -R` processes, one forward each (what mysocketd runs)
  one_ssh         one `ssh -N` with 100 `-R` options
  controlmaster   one master (`-o ControlMaster=yes`) with the first forward, then
                  99 `ssh -O forward -R ...` requests to it, issued concurrently

For each: time until all 100 answer, memory (RSS and PSS: PSS splits the
pages the ssh processes share, so it is the honest total), the edge's and the
clients' CPU for the set-up, then the blast radius -- SIGKILL one process
(for per_service, one of the 100) and count the forwards the edge lost -- and
the time from that kill until all 100 answer again, restarting what was
killed as soon as the edge has let go of its ports (with
ExitOnForwardFailure a forward the edge still holds would fail the restart).
"""

import resource
import signal
import subprocess
import time

import psutil

from bench import probe
from bench.stack import cpu_seconds, edge_cpu_seconds, forwarded, spawn, ssh_settings, stop, tree_memory
from devcluster.controller import free_port
from lib import sshargs

N = 100


class Carrier:
    """Starts the forwards one way; `victim()` is what a crash takes down; `restart()` brings it back."""

    def __init__(self, mode, specs, settings, workdir):
        self.mode, self.specs, self.settings = mode, specs, settings
        self.log = workdir / f"mux-{mode}.log"
        self.control = workdir / f"mux-{mode}.ctl"
        self.procs = []

    def _argv(self, specs, extra=()):
        argv = sshargs.ssh_argv(specs[0], self.settings, foreground=True)
        more = [a for s in specs[1:] for a in ("-R", f"{s.local_port}:{s.target_host}:{s.target_port}")]
        return argv[:-1] + more + list(extra) + argv[-1:]

    def start(self):
        if self.mode == "per_service":
            self.procs = [spawn(self._argv([s]), self.log) for s in self.specs]
        elif self.mode == "one_ssh":
            self.procs = [spawn(self._argv(self.specs), self.log)]
        else:
            self.procs = [spawn(self._argv(self.specs[:1], ["-o", "ControlMaster=yes",
                                                            "-o", f"ControlPath={self.control}"]), self.log)]
            self._forward_via_master(self.specs[1:])

    def _forward_via_master(self, specs, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.control.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError("the ControlMaster did not come up")
            time.sleep(0.01)
        base = [self.settings.binary, "-F", "none", "-o", f"ControlPath={self.control}", "-O", "forward",
                "-p", str(self.settings.port), "-l", specs[0].user_name]
        with open(self.log, "ab") as err:
            clients = [subprocess.Popen(base + ["-R", f"{s.local_port}:{s.target_host}:{s.target_port}",
                                                self.settings.host], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err) for s in specs]
        failed = sum(1 for c in clients if c.wait(timeout) != 0)
        if failed:
            raise RuntimeError(f"{failed} of {len(specs)} `ssh -O forward` requests failed (see {self.log})")

    def victim(self):
        return self.procs[len(self.procs) // 2]

    def restart(self, victim):
        if self.mode == "per_service":
            i = self.procs.index(victim)
            self.procs[i] = spawn(self._argv([self.specs[i]]), self.log)
        else:
            self.control.unlink(missing_ok=True)
            self.start()

    def stop(self):
        stop(self.procs)
        self.control.unlink(missing_ok=True)


def _wait_forwards(edge, mine, want, timeout=10):
    deadline = time.monotonic() + timeout
    while len(forwarded(edge) & mine) != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(forwarded(edge) & mine)} forwards on the edge, want {want}")
        time.sleep(probe.POLL)


def _reaped_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(carrier, edge, hosts):
    wanted = {h: "mux" for h in hosts}
    mine = set(hosts)
    edge0 = edge_cpu_seconds(edge)
    reaped0 = _reaped_cpu()
    t0 = time.monotonic()
    carrier.start()
    reaped = _reaped_cpu() - reaped0           # the `ssh -O forward` clients, gone by now
    up = max(probe.wait_all(edge.http_port, wanted, 120, names=lambda: {h: h for h in hosts},
                            forwarded=lambda: forwarded(edge)).values()) - t0
    edge_cpu = edge_cpu_seconds(edge) - edge0
    pids = [p.pid for p in carrier.procs]
    rss, pss = tree_memory(pids)
    ssh_cpu = reaped + sum(cpu_seconds(pid) for pid in pids if psutil.pid_exists(pid))
    victim = carrier.victim()
    lost_forwards = 1 if carrier.mode == "per_service" else N
    t1 = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    _wait_forwards(edge, mine, N - lost_forwards)
    time.sleep(0.2)                         # anything else going down would show by now
    blast = N - len(forwarded(edge) & mine)
    carrier.restart(victim)
    back = max(probe.wait_all(edge.http_port, wanted, 120, names=lambda: {h: h for h in hosts},
                              forwarded=lambda: forwarded(edge)).values()) - t1
    carrier.stop()
    _wait_forwards(edge, mine, 0)
    return {"all_answer": up, "rss": rss, "pss": pss, "edge_cpu": edge_cpu, "ssh_cpu": ssh_cpu,
            "blast_radius": blast, "recovery": back}


def run(stack, results, deadline, rounds=3):
    with stack.edge("edge-multiplex") as edge:
        account = stack.account(edge, "acct-multiplex")
        port = free_port()
        stack.backend.bind("127.0.0.1", port, "mux")
        user = account.user["user_name"]
        specs, hosts = [], []
        for i in range(N):
            sock = edge.api("POST", "/connect", {"name": f"mux-{i}"}, token=account.token).body
            specs.append(sshargs.TunnelSpec(int(sock["tunnels"][0]["local_port"]), "127.0.0.1", port, user))
            hosts.append(sock["dnsname"])
        settings = ssh_settings(edge, account)
        modes = ["per_service", "one_ssh", "controlmaster"]
        figures = {m: [] for m in modes}
        for r in range(rounds):
            if r and deadline.left() < 45:
                results.note(f"multiplexing: {r} rounds instead of {rounds} (time budget)")
                break
            for mode in modes[r % 3:] + modes[:r % 3]:
                carrier = Carrier(mode, specs, settings, stack.workdir)
                try:
                    figures[mode].append(measure(carrier, edge, hosts))
                finally:
                    carrier.stop()
                print(f"  {mode}: {figures[mode][-1]['all_answer']:.2f}s to all answering, "
                      f"blast radius {figures[mode][-1]['blast_radius']}", flush=True)
    for mode, runs in figures.items():
        def col(key):
            return [f[key] for f in runs]
        key = f"multiplex.{mode}"
        results.add(f"{key}.all_answer", col("all_answer"), "s", note=f"start until all {N} forwards answer")
        results.add(f"{key}.rss_total", col("rss"), "MB", note=f"ssh processes carrying {N} forwards")
        results.add(f"{key}.pss_total", col("pss"), "MB")
        results.add(f"{key}.edge_cpu", col("edge_cpu"), "s", note="edge CPU for the set-up")
        results.add(f"{key}.ssh_cpu", col("ssh_cpu"), "s", note="ssh clients' CPU for the set-up")
        results.add(f"{key}.blast_radius", col("blast_radius"), "Services", note="forwards lost to one SIGKILL")
        results.add(f"{key}.recovery", col("recovery"), "s", note="SIGKILL until all answer again")
