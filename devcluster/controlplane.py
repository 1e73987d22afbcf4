"""A real etcd + kube-apiserver on 127.0.0.1, for tests, the demo and benchmarks.

There is no kubelet, controller-manager or scheduler: objects are stored and
served exactly as in a cluster (validation, admission, RBAC, watch, ClusterIP
allocation), but nothing acts on them -- no pods run, namespaces never finish
terminating, no default ServiceAccount appears. Pods are played by stand-in
processes (devcluster.standin).

The flags follow controller-runtime's envtest, adjusted to what this project
needs: RBAC authorization (so the controller's ClusterRole is really enforced),
a service-account signing key (TokenRequest / `kubectl create token`), a static
admin token in group system:masters, the ServiceAccount admission plugin off
(nobody creates the default ServiceAccount), the endpoint reconciler off
(127.0.0.1 is not a valid Endpoints address) and etcd without fsync.

With `node=NodeAccess(...)` it is the control plane of a real node instead
(devcluster.nodecluster): the apiserver binds and advertises the node's
uplink address (pods reach it through the `kubernetes` Service, so the
endpoint reconciler is on), the ServiceAccount admission plugin mounts
tokens into pods, the Node authorizer serves the kubelet, and
kube-controller-manager (only the controllers a node needs) and
kube-scheduler run next to it.

Ports are picked free on 127.0.0.1 (or the node address) at start. stop_apiserver()/start_apiserver()
restart only the apiserver on the same port with the same certs and tokens, so
clients' kubeconfigs stay valid across a simulated outage. Processes are
stopped by stop(), by the context manager, by a weakref finalizer and at
interpreter exit, whichever comes first.
"""

import json
import logging
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import kubeconfig, pki
from .binaries import binary
from .processes import Child, stop_all

log = logging.getLogger(__name__)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# What a single node needs: pods from Deployments, a default ServiceAccount and the CA ConfigMap
# in every namespace (the projected token volume wants both), EndpointSlices, the not-ready taint
# lifted, namespaces that finish deleting, owners' garbage collected, the aggregated roles.
# job-controller: Helm's hooks are Jobs (the chart's uninstall hook, yaml/uninstall/job.yaml).
NODE_CONTROLLERS = ("deployment-controller", "replicaset-controller", "job-controller",
                    "endpointslice-controller", "serviceaccount-controller", "root-ca-certificate-publisher-controller",
                    "namespace-controller", "garbage-collector-controller", "node-lifecycle-controller",
                    "pod-garbage-collector-controller", "clusterrole-aggregation-controller")


@dataclass(frozen=True)
class NodeAccess:
    """How a real node reaches this control plane."""

    address: str        # the apiserver binds and advertises it (the node's uplink, on this side)
    node_name: str      # the kubelet's identity: system:node:<node_name>

    def users(self) -> dict:
        """Component identities with a token each; the apiserver's bootstrap RBAC (and the Node
        authorizer for the kubelet) gives each exactly its role."""
        return {f"system:node:{self.node_name}": ["system:nodes"], "system:kube-proxy": [],
                "system:kube-controller-manager": [], "system:kube-scheduler": []}


class ControlPlaneError(RuntimeError):
    """The control plane did not come up (the message carries the log tail)."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; str() includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()}"


class ControlPlane:
    """etcd + kube-apiserver in a private work dir; use as a context manager."""

    def __init__(self, workdir: Optional[Path] = None, ready_timeout: float = 60.0,
                 keep_workdir: bool = False, node: Optional[NodeAccess] = None):
        self.ready_timeout = ready_timeout
        self.node = node
        self.address = node.address if node else "127.0.0.1"
        self._requested_workdir = Path(workdir) if workdir else None
        self._remove_workdir = workdir is None and not keep_workdir
        self._children: list[Child] = []
        self._etcd: Optional[Child] = None
        self._apiserver: Optional[Child] = None
        self._finalizer: Optional[weakref.finalize] = None
        self.workdir: Optional[Path] = None     # set by start()
        self.kubeconfig: Optional[Path] = None  # admin kubeconfig, set by start()
        self.server = ""

    # --- lifecycle -------------------------------------------------------

    def start(self) -> "ControlPlane":
        """Start etcd, then kube-apiserver; return once /readyz says ok."""
        if self._finalizer is not None:
            raise RuntimeError("a ControlPlane can be started once; make a new one")
        self.workdir = self._requested_workdir or Path(tempfile.mkdtemp(prefix="devcluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self._finalizer = weakref.finalize(
            self, _cleanup, self._children, self.workdir if self._remove_workdir else None)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        if self.node:
            self.pki = pki.create(self.workdir / "pki", [self.node.address], self.node.users())
        else:
            self.pki = pki.create(self.workdir / "pki")
        self._https = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),   # loopback only: ignore proxies from the env
            urllib.request.HTTPSHandler(
                context=ssl.create_default_context(cafile=str(self.pki.ca_cert))))
        etcd_port, peer_port = _free_ports(2)
        [api_port] = _free_ports(1, self.address)
        self.server = f"https://{self.address}:{api_port}"
        self._etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._etcd = Child("etcd", self._etcd_argv(etcd_port, peer_port), self.workdir / "etcd.log")
        self._apiserver = Child("kube-apiserver", self._apiserver_argv(etcd_port, api_port),
                                self.workdir / "kube-apiserver.log")
        self._children.extend([self._etcd, self._apiserver])
        kubeconfig.write(self.kubeconfig, self.server, self.pki.ca_cert,
                         pki.ADMIN_USER, self.pki.admin_token)
        self._etcd.start()
        self._wait_ready(self._etcd, self._etcd_ready)
        self.start_apiserver()
        if self.node:
            self._start_controllers()
        log.info("control plane ready at %s in %.1fs; kubeconfig %s",
                 self.server, time.monotonic() - started, self.kubeconfig)

    def stop(self) -> None:
        """Stop both processes (SIGTERM, deadline, SIGKILL, reap); idempotent."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop_apiserver(self) -> None:
        """Take the apiserver away (etcd, port, certs and tokens are kept)."""
        self._apiserver.stop()

    def start_apiserver(self) -> None:
        """(Re)start the apiserver on the same port; return once /readyz is ok."""
        self._apiserver.start()
        self._wait_ready(self._apiserver, self._apiserver_ready)

    def running(self) -> bool:
        return all(child.running() for child in self._children) and bool(self._children)

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of each process's log, e.g. to explain why one died."""
        return "\n".join(f"--- {c.log_path}\n{c.log_tail(lines)}" for c in self._children)

    def pids(self) -> dict[str, Optional[int]]:
        """Pids of the running processes by binary name (None when not running)."""
        return {c.name: (c.pid if c.running() else None) for c in self._children}

    def component_kubeconfig(self, user: str) -> Path:
        """Kubeconfig of a component identity of NodeAccess.users() (node mode only)."""
        name = user.replace(":", "-")
        return kubeconfig.write(self.workdir / f"{name}.kubeconfig", self.server, self.pki.ca_cert,
                                user, self.pki.tokens[user])

    def _start_controllers(self) -> None:
        """kube-controller-manager and kube-scheduler; neither serves anything (--secure-port=0)
        and neither elects a leader: there is one of each."""
        kcm = [str(binary("kube-controller-manager")),
               f"--kubeconfig={self.component_kubeconfig('system:kube-controller-manager')}",
               f"--controllers={','.join(NODE_CONTROLLERS)}",
               "--use-service-account-credentials=true",   # each controller as its own ServiceAccount
               f"--root-ca-file={self.pki.ca_cert}",       # the kube-root-ca.crt ConfigMap
               "--leader-elect=false", "--secure-port=0", "--v=1"]
        scheduler = [str(binary("kube-scheduler")),
                     f"--kubeconfig={self.component_kubeconfig('system:kube-scheduler')}",
                     "--leader-elect=false", "--secure-port=0", "--v=1"]
        for name, argv in (("kube-controller-manager", kcm), ("kube-scheduler", scheduler)):
            child = Child(name, argv, self.workdir / f"{name}.log")
            self._children.append(child)
            child.start()

    # --- clients ---------------------------------------------------------

    def kubectl(self, *args: str, kubeconfig_path: Optional[Path] = None,
                input: Optional[str] = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run the cached kubectl as admin (or with `kubeconfig_path`).

        Do not put secrets in args (argv shows in `ps` and in errors): pass
        manifests on `input` instead.
        """
        argv = [str(binary("kubectl")), f"--kubeconfig={kubeconfig_path or self.kubeconfig}",
                f"--cache-dir={self.workdir / 'kubectl-cache'}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, ["kubectl", *args],
                               result.stdout, result.stderr)
        return result

    def service_account_kubeconfig(self, namespace: str, name: str,
                                   duration: str = "24h") -> Path:
        """Kubeconfig authenticating as ServiceAccount namespace/name (created if missing),
        with a TokenRequest token valid for `duration`."""
        account = {"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": namespace}}
        self.kubectl("apply", "-f", "-", input=json.dumps(account))
        token = self.kubectl("create", "token", name, "-n", namespace,
                             f"--duration={duration}").stdout.strip()
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return kubeconfig.write(path, self.server, self.pki.ca_cert,
                                f"system:serviceaccount:{namespace}:{name}", token)

    # --- flags -----------------------------------------------------------

    def _etcd_argv(self, client_port: int, peer_port: int) -> list[str]:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        return [
            str(binary("etcd")),
            "--name=devcluster",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=devcluster={peer}",
            "--unsafe-no-fsync=true",   # throwaway data: durability buys nothing here
            "--log-level=warn",
        ]

    def _apiserver_argv(self, etcd_port: int, port: int) -> list[str]:
        p = self.pki
        return [
            str(binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={port}",
            f"--tls-cert-file={p.serving_cert}",
            f"--tls-private-key-file={p.serving_key}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--token-auth-file={p.token_file}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p.sa_public_key}",
            f"--service-account-signing-key-file={p.sa_private_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
            *(self._node_flags() if self.node else self._no_node_flags()),
        ]

    def _node_flags(self) -> list[str]:
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={self.pki.kubelet_client_cert}",
            f"--kubelet-client-key={self.pki.kubelet_client_key}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    @staticmethod
    def _no_node_flags() -> list[str]:
        # No kubelet: nobody would create the default ServiceAccount the admission plugin
        # insists on, and 127.0.0.1 is not a valid endpoint for the `kubernetes` Service.
        return ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none"]

    # --- readiness -------------------------------------------------------

    def _wait_ready(self, child: Child, probe) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error = "no answer yet"
        while True:
            if not child.running():
                raise ControlPlaneError(
                    f"{child.name} exited with code {child.exit_code()} during start-up; "
                    f"end of {child.log_path}:\n{child.log_tail()}")
            try:
                if probe():
                    return
                last_error = "not ready"
            except (OSError, ValueError) as e:
                last_error = str(e)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{child.name} not ready after {self.ready_timeout:.0f}s ({last_error}); "
                    f"end of {child.log_path}:\n{child.log_tail()}")
            time.sleep(0.1)

    def _etcd_ready(self) -> bool:
        with _NO_PROXY.open(f"{self._etcd_url}/health", timeout=2) as r:
            return json.load(r).get("health") == "true"

    def _apiserver_ready(self) -> bool:
        request = urllib.request.Request(
            f"{self.server}/readyz",
            headers={"Authorization": f"Bearer {self.pki.admin_token}"})
        try:
            with self._https.open(request, timeout=2) as r:
                return r.status == 200 and r.read().strip() == b"ok"
        except urllib.error.HTTPError:   # 500 while post-start hooks run
            return False


# Loopback only: never route the etcd probe through a proxy from the env.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free on `address` a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((address, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _cleanup(children: list[Child], workdir: Optional[Path]) -> None:
    stop_all(children)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
