"""Leader election against the real apiserver, as the manifest's ServiceAccount."""

import uuid

import pytest
from kubernetes import config

from devcluster.stack import account_sockets, wait_for
from lib.kube import Rest
from lib.leader import LeaderElector

ENABLED = {"mysocket.io/enabled": "true"}


@pytest.fixture
def elector(controller_kubeconfig):
    made = []
    lease = "test-" + uuid.uuid4().hex[:8]

    def make(identity):
        api = config.new_client_from_config(config_file=str(controller_kubeconfig))
        e = LeaderElector(Rest(api), "mysocket", lease, identity=identity,
                          lease_seconds=3, renew_every=0.5, retry_every=0.2)
        made.append(e)
        e.start()
        return e

    yield make
    for e in made:
        e.stop()


def test_one_leader_and_a_clean_hand_over(elector):
    """Against the real apiserver (the timing rules are table-tested with a fake clock in tests/unit)."""
    a = elector("a")
    wait_for("a leads", a.is_leader, timeout=10)
    b = elector("b")
    renewed = lambda: a.leases.get(a.lease_name)["spec"]["renewTime"]   # noqa: E731
    first = renewed()
    wait_for("a renewing the Lease", lambda: renewed() != first, timeout=10)
    assert a.is_leader() and not b.is_leader()
    a.stop()                                        # releases the Lease
    wait_for("b takes over", b.is_leader, timeout=10)


def test_a_dead_leader_is_replaced_after_the_lease_expires(elector):
    a = elector("a")
    wait_for("a leads", a.is_leader, timeout=10)
    b = elector("b")
    a.stop(release=False)                           # as if the process died
    wait_for("b takes over", b.is_leader, timeout=15)


def test_two_replicas_serve_one_socket_each_through_its_own_tunnel(cluster, standins, make_controller, edge,
                                                                     account):
    lease = ["--leader-election", "--lease-name", "mysocketd-" + uuid.uuid4().hex[:6]]
    first = make_controller(extra_args=lease)
    wait_for("first leads", lambda: "leader" == first.http("/readyz")[1].strip())
    second = make_controller(extra_args=lease, cluster_name=first.cluster_name)
    assert second.http("/readyz") == (200, "standby\n")

    cluster.service("web", annotations=ENABLED)
    standins.for_service(cluster.ns, "web")
    dnsname = wait_for("dnsname", lambda: cluster.get("web")["metadata"]["annotations"].get("mysocket.io/dnsname"))
    wait_for("traffic", lambda: edge.get(dnsname)[0] == 200)
    # Active-active: one socket (made by the leader), one tunnel per replica, both connected.
    [socket] = wait_for("both replicas' tunnels connected", lambda: (lambda s: s if len(s) == 1 and len(
        [t for t in s[0]["tunnels"] if t["connected"]]) == 2 else None)(account_sockets(edge, account)))
    assert len({t["owner"] for t in socket["tunnels"]}) == 2
    assert len(first.ssh_children()) == 1 and len(second.ssh_children()) == 1

    first.kill()
    first.reap_orphans()                            # the node is gone, and its children with it
    assert edge.get(dnsname)[0] == 200              # served by the second replica's tunnel at once
    wait_for("the second replica leading", lambda: "leader" == second.http("/readyz")[1].strip(), timeout=30)
    assert len(second.ssh_children()) == 1
    assert len(account_sockets(edge, account)) == 1
