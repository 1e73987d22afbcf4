"""The private-network-namespace guard passes under `make test` and fails loudly elsewhere."""

import subprocess
import sys

import pytest

from devcluster.binaries import REPO_ROOT
from devcluster.netns import add_cluster_ip, assert_private_netns, loopback_addresses

GUARD = "from devcluster.netns import assert_private_netns; assert_private_netns()"


def _guard_in_nested_netns(setup: str) -> subprocess.CompletedProcess:
    """Run the guard in a new network namespace prepared by the shell `setup`."""
    script = f'{setup} && exec "$0" -c "$1"'
    return subprocess.run(["unshare", "--net", "--", "sh", "-c", script, sys.executable, GUARD],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)


def test_guard_passes_in_the_test_namespace():
    assert_private_netns()


UP_WITH_VETH = ("ip link set lo up && ip link add veth-a type veth peer name veth-b"
                " && ip address add 172.31.255.1/30 dev veth-a && ip link set veth-a up")


@pytest.mark.parametrize("setup, reason", [
    ("true", "lo is down"),
    (f"{UP_WITH_VETH} && ip route add default via 172.31.255.2", "default route (via 172.31.255.2 dev veth-a)"),
    ("ip link set lo up && ip link add vx0 type vxlan id 42 dstport 4789 local 127.0.0.1", "vx0 (vxlan)"),
], ids=["lo-down", "default-route", "tunnel"])
def test_guard_fails_loudly_in_other_namespaces(setup, reason):
    result = _guard_in_nested_netns(setup)
    assert result.returncode != 0
    assert "NotInPrivateNetns" in result.stderr
    assert reason in result.stderr and "make test" in result.stderr


def test_guard_accepts_what_a_node_adds():
    """A node's uplink (a veth to its own namespace) and its bridge reach nothing off the machine."""
    result = _guard_in_nested_netns(f"{UP_WITH_VETH} && ip link add cni0 type bridge")
    assert result.returncode == 0, result.stderr


def test_add_cluster_ip_is_idempotent():
    add_cluster_ip("10.96.255.254")
    add_cluster_ip("10.96.255.254")
    assert loopback_addresses().count("10.96.255.254") == 1
