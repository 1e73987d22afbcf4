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


@pytest.mark.parametrize("setup, reason", [
    ("true", "lo is down"),
    ("ip link set lo up && ip link add veth-a type veth peer name veth-b", "interfaces"),
], ids=["lo-down", "extra-interface"])
def test_guard_fails_loudly_in_other_namespaces(setup, reason):
    result = _guard_in_nested_netns(setup)
    assert result.returncode != 0
    assert "NotInPrivateNetns" in result.stderr
    assert reason in result.stderr and "make test" in result.stderr


def test_add_cluster_ip_is_idempotent():
    add_cluster_ip("10.96.255.254")
    add_cluster_ip("10.96.255.254")
    assert loopback_addresses().count("10.96.255.254") == 1
