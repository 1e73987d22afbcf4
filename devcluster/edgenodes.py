"""mysocketd on an edge of several nodes: the scene the global tests and the benchmark share.

    with PostgresServer() as pg, EdgeCluster(work, pg.new_database("e"), 3) as edge:
        with GlobalScene.start(control_plane, sa_kubeconfig, edge, work, ["web", "api"]) as scene:
            scene.connections()     # {"web": {"127.0.1.1", "127.0.1.2"}, ...}: live nodes holding a forward

One controller (one replica), scoped to a namespace of its own, talks to the
API of the last node and pins the edge's host key strictly with that node's
`known_hosts` line: every node shares the key, so the one line must vouch for
all of them (lib/sshargs.host_key_alias). Each Service is played by one
stand-in pod. "Connections of a Service" are what the edge's nodes themselves
report (`/_admin/tunnels` on each live node), never what the controller says.
"""

import dataclasses
import os
import signal
import time
import uuid
from pathlib import Path

from devcluster.controller import Account, ControllerProcess
from devcluster.stack import Cluster, exposed
from devcluster.standin import StandIns

ENABLED = {"mysocket.io/enabled": "true"}


@dataclasses.dataclass
class GlobalScene:
    edge: object                    # edge.clustertesting.EdgeCluster
    api_node: object                # the node whose API the controller uses (never the one a test kills)
    kube: Cluster
    account: Account
    controller: ControllerProcess
    pods: StandIns
    dnsnames: dict                  # Service -> dnsname

    @classmethod
    def start(cls, control_plane, sa_kubeconfig, edge, workdir, services, extra_args=(), log_level="DEBUG"):
        workdir = Path(workdir)
        namespace = f"global-{uuid.uuid4().hex[:6]}"
        control_plane.kubectl("create", "namespace", namespace)
        api_node = edge.nodes[-1]
        account = Account.register(api_node, workdir / "account")
        account.token = api_node.login(account.email, account.password)
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(api_node.known_hosts_line() + "\n")
        pods = StandIns(control_plane, workdir / "pods")
        controller = ControllerProcess(workdir / "controller", kubeconfig=sa_kubeconfig, edge=api_node,
                                       account=account, namespace=namespace, cluster_name="g" + uuid.uuid4().hex[:6],
                                       extra_args=["--known-hosts", str(known_hosts), *extra_args],
                                       log_level=log_level)
        scene = cls(edge, api_node, Cluster(control_plane, namespace), account, controller, pods, {})
        try:
            controller.start()
            for name in services:
                scene.kube.service(name)
                pods.for_service(namespace, name)
                scene.kube.annotate(name, **ENABLED)
            scene.dnsnames = {name: exposed(scene.kube, api_node, name) for name in services}
        except BaseException:
            scene.stop()
            raise
        return scene

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        self.controller.stop()
        self.controller.reap_orphans()
        self.pods.stop()
        self.kube.cp.kubectl("delete", "namespace", self.kube.ns, "--wait=false", check=False)

    # -- what the edge says ----------------------------------------------------

    def sockets(self):
        """The account's sockets with their tunnels, as the controller's node answers."""
        resp = self.api_node.api("GET", "/connect", token=self.account.token)
        if resp.status == 401:
            self.account.token = self.api_node.login(self.account.email, self.account.password)
            resp = self.api_node.api("GET", "/connect", token=self.account.token)
        return {s["dnsname"]: s for s in resp.body}

    def connections(self, nodes=None):
        """Service -> the hosts of `nodes` (default: the running ones) holding a forward of its tunnels."""
        nodes = [n for n in (nodes or self.edge.nodes) if n.running]
        held = {n.host: {t["local_port"] for t in n.tunnels()} for n in nodes}
        sockets = self.sockets()
        found = {}
        for name, dnsname in self.dnsnames.items():
            ports = {t["local_port"] for t in sockets.get(dnsname, {}).get("tunnels") or []}
            found[name] = {host for host, local in held.items() if ports & local}
        return found

    def placed(self):
        """Service -> the `tunnel_server` of each of its tunnels (where the edge placed them)."""
        sockets = self.sockets()
        return {name: sorted(t["tunnel_server"] for t in sockets[dnsname]["tunnels"])
                for name, dnsname in self.dnsnames.items()}

    def on_two_nodes(self, nodes=None):
        """Every Service has connections on at least two of `nodes`."""
        return all(len(hosts) >= 2 for hosts in self.connections(nodes).values())

    def victim(self):
        """The node to lose: the one holding most connections, never the controller's API node."""
        counts = {}
        for hosts in self.connections().values():
            for host in hosts:
                counts[host] = counts.get(host, 0) + 1
        candidates = [n for n in self.edge.nodes if n is not self.api_node and counts.get(n.host)]
        return max(candidates, key=lambda n: (counts[n.host], n.host))

    def kill(self, node, sig=signal.SIGKILL):
        return kill_node(node, sig)

    def wait_on_two_nodes(self, alive, timeout=60.0):
        """The monotonic time at which every Service had connections on two nodes of `alive` (polled every
        50 ms); TimeoutError, with what was seen, after `timeout` seconds."""
        started = time.monotonic()
        while not self.on_two_nodes(alive):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not every Service on two live nodes after {timeout:.0f} s: "
                                   f"{self.connections(alive)}\n{self.controller.log_tail(30)}")
            time.sleep(0.05)
        return time.monotonic()


def kill_node(node, sig=signal.SIGKILL):
    """`sig` to an edge node and its data plane at once (a host lost); returns the monotonic time."""
    pids = [node.pid, *node.child_pids()]
    at = time.monotonic()
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return at
