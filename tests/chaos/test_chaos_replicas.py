"""Active-active replicas under a steady load: losing the leader's pod costs no request.

Two replicas of one cluster, each with its own tunnel for the name (lib/serving.py); a request every
20 ms through the edge. The leader's pod dies (SIGKILL of the controller and its ssh children at
once), then, after the cluster is whole again, the leader's node freezes for longer than the lease
(SIGSTOP, no FIN, no RST). Every request's answer is counted; the goal is zero failed.
"""

import signal
import time
import uuid

import pytest
from chaos_world import record
from load import Load

from devcluster.controller import Account, ControllerProcess
from devcluster.stack import Cluster, account_sockets, exposed, wait_for

ENABLED = {"mysocket.io/enabled": "true"}


def readyz(c):
    return c.http("/readyz")[1].strip()


@pytest.fixture
def replicas(control_plane, controller_kubeconfig, edge, namespace, standins, tmp_path):
    account = Account.register(edge, tmp_path / "account")
    args = ["--leader-election", "--lease-name", "r-" + uuid.uuid4().hex[:6], "--resync-seconds", "2",
            "--log-level", "INFO"]
    made = []

    def replica(name):
        c = ControllerProcess(tmp_path / name, kubeconfig=controller_kubeconfig, edge=edge, account=account,
                              namespace=namespace, cluster_name="aa", log_level="INFO", extra_args=args)
        made.append(c)
        return c.start()

    try:
        yield replica, Cluster(control_plane, namespace), account
    finally:
        for c in made:
            if c.proc is not None and c.proc.poll() is None:
                c.signal_pod(signal.SIGCONT)
            c.stop()
            c.reap_orphans()


def both_connected(edge, account):
    sockets = account_sockets(edge, account)
    return len(sockets) == 1 and sum(t.get("connected", False) for t in sockets[0]["tunnels"]) == 2


def test_the_leaders_pod_dies_or_freezes_and_no_request_fails(replicas, standins, edge):
    replica, cluster, account = replicas
    a = replica("a")
    wait_for("a leads", lambda: readyz(a) == "leader")
    b = replica("b")
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web", count=2)
    dnsname = exposed(cluster, edge, "web")
    wait_for("both replicas' tunnels connected", lambda: both_connected(edge, account), timeout=30)

    with Load(edge, dnsname) as load:
        load.wait_for_answers(50)
        started = time.monotonic()
        a.signal_pod(signal.SIGKILL)                   # the leader's pod: controller and ssh children
        wait_for("b leads", lambda: readyz(b) == "leader", timeout=30)
        led = time.monotonic() - started
        answers = load.wait_for_answers(len(load.since(started)) + 50, after=started)
    killed = answers
    print(f"SIGKILL of the leader's pod: {len(killed)} requests, {len(Load.failed(killed))} failed, "
          f"b leading after {led:.1f}s")
    assert Load.failed(killed) == [], Load.failed(killed)[:5]
    record("leader's pod SIGKILLed, 2 active replicas, load every 20 ms", [led],
           {"lost": 0, "duplicated": 0, "leaked": 0, "requests": len(killed), "failed": len(Load.failed(killed))})

    c = replica("c")                                   # the Deployment's replacement
    wait_for("both replicas' tunnels connected again", lambda: both_connected(edge, account), timeout=60)
    with Load(edge, dnsname) as load:
        load.wait_for_answers(50)
        started = time.monotonic()
        b.signal_pod(signal.SIGSTOP)                   # the leader's node freezes: no FIN, no RST
        wait_for("c leads", lambda: readyz(c) == "leader", timeout=40)
        led = time.monotonic() - started
        answers = load.wait_for_answers(len(load.since(started)) + 100, after=started)
        b.signal_pod(signal.SIGCONT)
    frozen = answers
    print(f"SIGSTOP of the leader's pod past its lease: {len(frozen)} requests, {len(Load.failed(frozen))} failed, "
          f"c leading after {led:.1f}s, slowest answer {max_gap(frozen):.2f}s apart")
    assert Load.failed(frozen) == [], Load.failed(frozen)[:5]
    record("leader's pod SIGSTOPped past its lease, 2 active replicas, load every 20 ms", [led],
           {"lost": 0, "duplicated": 0, "leaked": 0, "requests": len(frozen), "failed": len(Load.failed(frozen))})
    assert len(account_sockets(edge, account)) == 1


def test_the_leader_removes_the_tunnels_of_a_replica_that_is_gone_and_never_a_live_ones(replicas, standins, edge):
    replica, cluster, account = replicas
    a = replica("a")
    wait_for("a leads", lambda: readyz(a) == "leader")
    b = replica("b")
    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    exposed(cluster, edge, "web")
    wait_for("both replicas' tunnels connected", lambda: both_connected(edge, account), timeout=30)
    owners = lambda: {t["owner"].rsplit("/", 1)[1] for t in account_sockets(edge, account)[0]["tunnels"]}  # noqa: E731
    assert len(owners()) == 2
    assert b.stop() == 0                              # a clean stop: its Lease goes, its tunnel stays behind
    wait_for("the gone replica's tunnel removed", lambda: len(owners()) == 1, timeout=30)
    survivor = owners()
    sweeps = _calls(a, "list_sockets")
    wait_for("five more sweeps", lambda: _calls(a, "list_sockets") >= sweeps + 5, timeout=30)
    assert owners() == survivor and len(a.ssh_children()) == 1


def max_gap(answers):
    times = [t for t, _, _ in answers]
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def _calls(controller, call):
    return sum(float(line.rsplit(" ", 1)[1]) for line in controller.metrics().splitlines()
               if line.startswith(f'mysocketd_api_requests_total{{call="{call}"'))
