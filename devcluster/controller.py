"""Run mysocketd as a real process against a local control plane and edge.

Used by the integration tests, the chaos suite, the demo and the benchmarks,
so that all of them exercise the same entry point a container runs: the
credentials arrive as files in a secret directory (as the mounted Secret),
the Kubernetes identity is a kubeconfig of the manifest's ServiceAccount,
and the controller's own ssh children are found as its child processes.

The process's output goes to a file, never a pipe, so it can never block on
a full pipe; `stop()` is SIGTERM, a deadline, then SIGKILL, and the context
manager always stops it (and any ssh child it left) even when a test fails.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Account:
    """A Mysocket account on the edge and the files the Secret would hold."""

    email: str
    password: str
    private_key: Path
    user: dict

    @classmethod
    def register(cls, edge, workdir):
        from edge.testing import ssh_keygen
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        key = workdir / f"id_{uuid.uuid4().hex[:8]}"
        public = ssh_keygen(key)
        email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
        password = "pw-" + uuid.uuid4().hex
        user = edge.register(email, password, public)
        return cls(email, password, key, user)

    def write_secret_dir(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "email").write_text(self.email + "\n")
        (path / "password").write_text(self.password + "\n")
        (path / "privatekey").write_bytes(self.private_key.read_bytes())
        return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControllerProcess:
    def __init__(self, workdir, *, kubeconfig, edge, account, namespace="", cluster_name="test",
                 extra_args=(), log_level="DEBUG", root=REPO_ROOT):
        self.workdir = Path(workdir)
        self.kubeconfig = kubeconfig
        self.edge = edge
        self.account = account
        self.namespace = namespace
        self.cluster_name = cluster_name
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.root = Path(root)             # the checkout whose mysocketd.py runs (make bench: before and after)
        self.health_port = free_port()
        self.state_dir = self.workdir / "state"
        self.secret_dir = self.workdir / "secret"
        self.log_path = self.workdir / "mysocketd.log"
        self.proc = None
        self._ssh_pids = set()

    def argv(self):
        argv = [sys.executable, str(self.root / "mysocketd.py"),
                "--api-url", self.edge.api_url, "--ssh-host", self.edge.ssh_host,
                "--ssh-port", str(self.edge.ssh_port), "--secret-dir", str(self.secret_dir),
                "--state-dir", str(self.state_dir),
                "--health-port", str(self.health_port), "--log-level", self.log_level]
        if self.cluster_name:                   # "" = the default identity, kube-system's UID
            argv += ["--cluster-name", self.cluster_name]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        return argv + self.extra_args

    def start(self, wait_ready=True, timeout=30):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.account.write_secret_dir(self.secret_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYSOCKETD_")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         cwd=str(self.root))
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def uninstall(self, *extra, timeout=180):
        """`mysocketd --uninstall` with this controller's settings, run to its end: (exit status, log text)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.account.write_secret_dir(self.secret_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYSOCKETD_")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        result = subprocess.run([*self.argv(), "--uninstall", *extra], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, env=env, cwd=str(self.root), timeout=timeout)
        return result.returncode, result.stdout + result.stderr

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mysocketd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.http("/readyz")[0] == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"mysocketd not ready after {timeout}s: {self.http('/readyz')}\n{self.log_tail()}")

    def http(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    def metrics(self):
        return self.http("/metrics")[1]

    def ssh_children(self):
        """The live ssh sessions this controller started (psutil.Process objects): each holds up to a
        shard of its forwards (lib/tunnels.py). The short-lived `ssh -O forward|cancel` clients that add
        and take away forwards are not sessions and are left out."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        found = [p for p in kids if _name(p) == "ssh" and _status(p) not in (psutil.STATUS_ZOMBIE, None)
                 and "-O" not in _cmdline(p)]
        self._ssh_pids.update(p.pid for p in found)
        return found

    def session_of(self, namespace, name):
        """The ssh session (a psutil.Process) that holds this Service's forward, as the log last said."""
        label = None
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = str(entry.get("message", ""))
            if message.startswith("tunnel up") and (entry.get("namespace"), entry.get("service")) == (namespace, name):
                label = message.rsplit("(ssh session ", 1)[1].split(")", 1)[0]
        if label is None:
            return None
        control = f"-{label.rsplit('#', 1)[1]}"
        return next((p for p in self.ssh_children() if "-S" in _cmdline(p)
                     and _cmdline(p)[_cmdline(p).index("-S") + 1].endswith(control)), None)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def signal_pod(self, sig):
        """`sig` to the controller and every ssh child of it at once: its pod's node froze (SIGSTOP),
        thawed (SIGCONT) or died (SIGKILL)."""
        pids = [self.proc.pid] + [c.pid for c in self.ssh_children()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def kill(self):
        """SIGKILL, as a crash: its ssh children are left behind, as they would be."""
        self.ssh_children()
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout=15):
        if self.proc is None:
            return None
        self.ssh_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def reap_orphans(self):
        """Kill ssh processes this controller started that outlived it (after kill())."""
        procs = []
        for pid in self._ssh_pids:
            try:
                p = psutil.Process(pid)
                if _name(p) == "ssh":
                    p.kill()
                    procs.append(p)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        return len(procs)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self):
        """The JSON log lines as dicts (non-JSON lines are skipped)."""
        records = []
        for line in self.log_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        self.reap_orphans()
        if exc_type is not None:
            print(f"--- mysocketd log tail ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)
        return False


def _status(proc):
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return None


def _name(proc):
    try:
        return proc.name()
    except psutil.NoSuchProcess:
        return ""


def _cmdline(proc):
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
