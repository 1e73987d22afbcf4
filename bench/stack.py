"""The system under measurement, assembled once per `make bench` and always taken down.

One control plane for the whole run (it is not what is measured, and it takes
seconds to start). Each figure group gets its own edge and its own account, a
namespace-scoped controller running as the manifest's ServiceAccount at
log level INFO (DEBUG logging would be part of the CPU we measure), and its
own Services. Pods are played by one `bench.backend` process bound to every
ClusterIP (see that module for why not devcluster.standin).

Everything started here is remembered and stopped on leaving the `with`
block, even when a figure fails half-way, and `make bench` runs the whole thing in a PID
namespace, so nothing can outlive it.
"""

import contextlib
import dataclasses
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from devcluster import ControlPlane, assert_private_netns
from devcluster.controller import Account, ControllerProcess
from devcluster.netns import loopback_addresses
from edge.testing import EdgeProcess
from lib import sshargs

ROOT = Path(__file__).resolve().parent.parent
ENABLED = "mysocket.io/enabled"


@dataclasses.dataclass
class Scene:
    """A controller exposing one namespace's Services through an edge: what the figures act on."""

    stack: object
    edge: object
    account: object
    controller: object
    namespace: str
    cluster: str
    services: dict          # name -> ClusterIP
    dnsnames: dict = dataclasses.field(default_factory=dict)   # name -> dnsname, filled as learned

    def expected(self, name):
        """What the backend answers for this Service."""
        return f"{self.namespace}/{name}"


class Deadline:
    """The global time budget; figure groups shrink their run counts to fit it."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self):
        return self.seconds - (time.monotonic() - self.start)

    def elapsed(self):
        return time.monotonic() - self.start


class Backend:
    """The bench.backend child: bind(ip, port, name) makes `name` answer at ip:port."""

    def __init__(self, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.backend"], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.bound = set()

    def bind(self, ip, port, name):
        if (ip, port) in self.bound:
            return
        self.proc.stdin.write(f"bind {ip} {port} {name}\n".encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode().strip()
        if answer != "OK":
            raise RuntimeError(f"backend cannot bind {ip}:{port}: {answer or 'it exited'}")
        self.bound.add((ip, port))

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class BenchStack:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self._exit = contextlib.ExitStack()
        self.controllers = []
        self._ips_handed_out = set()

    def __enter__(self):
        assert_private_netns()
        try:
            self.cp = self._exit.enter_context(ControlPlane(self.workdir / "cp"))
            self.cp.kubectl("apply", "-f", str(ROOT / "yaml" / "mysocketd.yaml"))
            self.sa_kubeconfig = self.cp.service_account_kubeconfig("mysocket", "mysocketd")
            self.backend = Backend(self.workdir / "backend.log")
            self._exit.callback(self.backend.close)
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc):
        for c in self.controllers:
            c.stop()
            c.reap_orphans()
        self._exit.close()
        return False

    # -- parts ----------------------------------------------------------------

    def edge(self, name):
        """A fresh edge (admin endpoints on) as a context manager."""
        return EdgeProcess(self.workdir / name, admin=True, log_level="INFO")

    def account(self, edge, name):
        acct = Account.register(edge, self.workdir / name)
        acct.token = edge.login(acct.email, acct.password)
        return acct

    def controller(self, edge, account, namespace, cluster_name, workdir=None, root=None, extra_args=()):
        """A controller of this code, or of `root` (a checkout of the code before: make bench's "before")."""
        c = ControllerProcess(workdir or self.workdir / f"controller-{cluster_name}", kubeconfig=self.sa_kubeconfig,
                              edge=edge, account=account, namespace=namespace, cluster_name=cluster_name,
                              log_level="INFO", root=root or ROOT, extra_args=extra_args)
        self.controllers.append(c)
        return c.start()

    def namespace(self, prefix):
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.cp.kubectl("create", "namespace", name)
        return name

    # -- Services and their stand-ins ------------------------------------------

    def stand_ins(self, namespace, names):
        """Pick a free ClusterIP for each future Service, put it on lo and bind the backend there.

        Choosing the ClusterIPs up front (spec.clusterIP) lets the stand-ins listen
        before the Services exist, so a burst can be ONE apply that creates them
        annotated. IPs come from the bottom of the range, which the apiserver keeps
        for static assignment, skipping any already taken. Returns {name: ClusterIP}.
        """
        listing = self.cp.kubectl("get", "services", "-A", "-o", "jsonpath={..clusterIP}").stdout.split()
        taken = set(listing) | self._ips_handed_out
        pool = (f"10.96.{i >> 8}.{i & 255}" for i in range(2, 65534))
        ips = dict(zip(names, (ip for ip in pool if ip not in taken)))
        self._ips_handed_out |= set(ips.values())
        present = set(loopback_addresses())
        batch = "".join(f"address add {ip}/32 dev lo\n" for ip in ips.values() if ip not in present)
        if batch:
            subprocess.run(["ip", "-force", "-batch", "-"], input=batch, text=True, check=True, timeout=60)
        for name, ip in ips.items():
            self.backend.bind(ip, 8000, f"{namespace}/{name}")
        return ips

    def apply_services(self, namespace, ips, annotated):
        """One `kubectl apply` of a List of Services ({name: ClusterIP}); returns its wall time in seconds."""
        items = [{"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": n, "namespace": namespace,
                               "annotations": {ENABLED: "true"} if annotated else {}},
                  "spec": {"selector": {"app": n}, "clusterIP": ip,
                           "ports": [{"name": "http", "port": 8000}]}}
                 for n, ip in ips.items()]
        started = time.monotonic()
        self.cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                        timeout=120)
        return time.monotonic() - started

    def annotate(self, namespace, name, value):
        """kubectl annotate (value None removes); returns its wall time in seconds."""
        arg = f"{ENABLED}-" if value is None else f"{ENABLED}={value}"
        started = time.monotonic()
        self.cp.kubectl("annotate", "--overwrite", "-n", namespace, "service", name, arg)
        return time.monotonic() - started


def sockets(edge, account):
    """The account's sockets on the edge (GET /connect)."""
    resp = edge.api("GET", "/connect", token=account.token)
    if resp.status == 401:
        account.token = edge.login(account.email, account.password)
        resp = edge.api("GET", "/connect", token=account.token)
    return resp.body


def dnsnames(edge, account, cluster, namespace):
    """{service name: dnsname} of the controller's sockets in namespace."""
    prefix = f"mysocketd/{cluster}/{namespace}/"
    return {s["name"][len(prefix):]: s["dnsname"] for s in sockets(edge, account) if s["name"].startswith(prefix)}


def ssh_settings(edge, account):
    """The controller's own ssh options (lib.sshargs), for the hand-made tunnels."""
    return sshargs.SshSettings(host=edge.ssh_host, port=edge.ssh_port, identity_file=str(account.private_key),
                               known_hosts_file=str(edge.known_hosts_file()), strict_host_keys=True)


def spawn(argv, log_path):
    with open(log_path, "ab") as err:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def stop(procs, timeout=3.0):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def tree_memory(pids):
    """(total RSS, total PSS) in MB of these processes; PSS splits shared pages fairly."""
    rss = pss = 0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
            rss += info.rss
            pss += info.pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss / 2**20, pss / 2**20


def cpu_seconds(pid):
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def edge_cpu_seconds(edge):
    """The edge's CPU: its Python process and its Go data plane (a child of it)."""
    total = cpu_seconds(edge.pid)
    for child in psutil.Process(edge.pid).children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def forwarded(edge):
    """dnsnames the edge has a connected tunnel for (admin endpoint)."""
    return {t["dnsname"] for t in edge.tunnels()}


_UP = re.compile(r"^mysocketd_tunnels_up (\S+)$", re.M)


def tunnels_up(controller):
    """The controller's own count of ssh children that are up (stayed alive 2 s); -1 if unknown."""
    m = _UP.search(controller.metrics() or "")
    return int(float(m.group(1))) if m else -1


def wait_settled(controller, count, timeout=60):
    """Until the controller reports `count` tunnels up (so back-off and Events are behind it)."""
    deadline = time.monotonic() + timeout
    while tunnels_up(controller) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"tunnels up {tunnels_up(controller)}, want {count}")
        time.sleep(0.1)
