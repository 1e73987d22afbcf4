"""Fenced leadership: a leader that lost the apiserver, or was frozen past its lease, writes nothing.

Two replicas on one account. The first one's kubeconfig points through a TCP
relay the test cuts (a partition that is made, not mocked), while the
Mysocket API stays reachable for it. The counts of its own remote writes come
from its /metrics (`mysocketd_api_requests_total` of the mutating calls, every
attempt counted where the request is sent).
"""

import json
import signal
import time
import uuid
from urllib.parse import urlparse

import pytest
from chaos_world import record

from devcluster.controller import Account, ControllerProcess
from devcluster.relay import Relay
from devcluster.stack import Cluster, account_sockets, wait_for

# Shared things only: a replica's own tunnel is its own to make or delete, leader or not (lib/serving.py).
MUTATIONS = ("connect", "create_socket", "update_socket", "delete_socket")


def mutations(controller):
    total = 0.0
    for line in controller.metrics().splitlines():
        if line.startswith("mysocketd_api_requests_total{") and any(f'call="{c}"' in line for c in MUTATIONS):
            total += float(line.rsplit(" ", 1)[1])
    return total


def readyz(controller):
    return controller.http("/readyz")[1].strip()


def leading(controller):
    """The replica's own word (mysocketd_leader): 1 only while its Lease is confirmed."""
    return "mysocketd_leader 1.0" in controller.metrics()


def sweeps(controller):
    """How many times it listed the account's sockets: each sweep does once."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in controller.metrics().splitlines()
               if line.startswith('mysocketd_api_requests_total{call="list_sockets"'))


@pytest.fixture
def pair(control_plane, controller_kubeconfig, edge, namespace, standins, tmp_path):
    """(first, second, relay, cluster, account): the first replica reaches the apiserver through the relay."""
    account = Account.register(edge, tmp_path / "account")
    server = urlparse(control_plane.server)
    with Relay(server.hostname, server.port) as relay:
        config = json.loads(controller_kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
        relayed = tmp_path / "relayed.kubeconfig"
        relayed.write_text(json.dumps(config))
        args = ["--leader-election", "--lease-name", "p-" + uuid.uuid4().hex[:6], "--resync-seconds", "1"]
        made = []

        def replica(name, kubeconfig):
            c = ControllerProcess(tmp_path / name, kubeconfig=kubeconfig, edge=edge, account=account,
                                  namespace=namespace, cluster_name="part", log_level="INFO", extra_args=args)
            made.append(c)
            return c.start()

        try:
            first = replica("first", relayed)
            wait_for("the first replica leading", lambda: readyz(first) == "leader")
            second = replica("second", controller_kubeconfig)
            yield first, second, relay, Cluster(control_plane, namespace), account
        finally:
            for c in made:
                c.stop()
                c.reap_orphans()


def expose(cluster, standins, edge, name):
    cluster.service(name, annotations={"mysocket.io/enabled": "true"})
    standins.for_service(cluster.ns, name)
    dnsname = wait_for(f"{name}'s dnsname",
                       lambda: (cluster.get(name)["metadata"].get("annotations") or {}).get("mysocket.io/dnsname"))
    wait_for(f"{name} answering", lambda: edge.get(dnsname)[0] == 200, timeout=60)
    return dnsname


def end_state(edge, account, cluster, names):
    sockets = account_sockets(edge, account)
    by_name = sorted(s["name"] for s in sockets)
    assert by_name == sorted(f"mysocketd/part/{cluster.ns}/{n}" for n in names), by_name
    for n in names:
        dnsname = cluster.get(n)["metadata"]["annotations"]["mysocket.io/dnsname"]
        wait_for(f"{n} answering", lambda d=dnsname: edge.get(d)[0] == 200, timeout=60)


def test_a_leader_cut_off_from_the_apiserver_makes_no_remote_write(pair, standins, edge):
    first, second, relay, cluster, account = pair
    expose(cluster, standins, edge, "web")
    writes = mutations(first)

    relay.cut()
    started = time.monotonic()
    wait_for("the first replica no longer a confirmed leader", lambda: not leading(first), timeout=30)
    wait_for("the second replica leading", lambda: readyz(second) == "leader", timeout=30)
    took_over = time.monotonic() - started
    expose(cluster, standins, edge, "web2")              # a socket the cut-off leader's stale cache knows nothing of
    cluster.delete("web")                               # and one it still believes exposed
    wait_for("web's socket deleted by the new leader",
             lambda: len(account_sockets(edge, account)) == 1, timeout=60)
    floor = sweeps(second)
    wait_for("five more sweeps by the new leader", lambda: sweeps(second) >= floor + 5, timeout=30)
    assert mutations(first) == writes, "the cut-off leader changed something on the account"

    relay.heal()
    wait_for("the first replica standing by", lambda: readyz(first) == "standby", timeout=30)
    # A follower now: it serves what the leader made (web2), and nothing that is gone (web).
    wait_for("it serves web2 only", lambda: len(first.ssh_children()) == 1, timeout=30)
    end_state(edge, account, cluster, ["web2"])
    assert mutations(first) == writes
    record("leader cut off from the apiserver (standby leads after)", [took_over],
           {"lost": 0, "duplicated": 0, "leaked": 0})


def test_a_leader_frozen_past_its_lease_makes_no_remote_write_when_it_wakes(pair, standins, edge):
    first, second, relay, cluster, account = pair
    expose(cluster, standins, edge, "web")
    writes = mutations(first)

    first.signal(signal.SIGSTOP)
    try:
        wait_for("the second replica leading", lambda: readyz(second) == "leader", timeout=30)
        relay.cut()                                     # and its watch broke meanwhile: its cache is stale
        expose(cluster, standins, edge, "web2")
        cluster.delete("web")
        wait_for("web's socket deleted by the new leader", lambda: len(account_sockets(edge, account)) == 1,
                 timeout=60)
    finally:
        first.signal(signal.SIGCONT)
    wait_for("the woken replica answering, not a confirmed leader",
             lambda: first.http("/metrics")[0] == 200 and not leading(first), timeout=30)
    floor = sweeps(second)
    wait_for("five more sweeps by the new leader", lambda: sweeps(second) >= floor + 5, timeout=30)
    assert mutations(first) == writes, "the woken leader changed something on the account"

    relay.heal()
    wait_for("the woken replica standing by", lambda: readyz(first) == "standby", timeout=30)
    end_state(edge, account, cluster, ["web2"])
    assert mutations(first) == writes
