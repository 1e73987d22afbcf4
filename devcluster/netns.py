"""Guard and helpers for the private network namespace the tests run in.

`make test` runs pytest under `unshare --net` with only `lo` up, so that
everything the tests start can listen on 127.0.0.1 and on Service ClusterIPs
(added to `lo` here) without ever touching the host's network. Tests that need
that isolation call assert_private_netns(), which fails loudly -- a silent skip
would count as a pass -- and says how to run them properly.

Interfaces are read with if_nameindex() (netlink, per network namespace), not
from /sys/class/net, which shows the namespace of whoever mounted sysfs.
"""

import ipaddress
import json
import socket
import subprocess

HOW_TO_RUN = "run it through `make test` (pytest inside `unshare --net` with only lo up)"


class NotInPrivateNetns(RuntimeError):
    """The process is not in a loopback-only network namespace."""


def assert_private_netns() -> None:
    """Raise NotInPrivateNetns unless the only interface is `lo` and it is up."""
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        raise NotInPrivateNetns(
            f"this test needs a private network namespace, but interfaces {names} "
            f"are visible: {HOW_TO_RUN}")
    if "UP" not in _link_flags("lo"):
        raise NotInPrivateNetns(f"lo is down in this network namespace: {HOW_TO_RUN}")


def add_cluster_ip(ip: str) -> None:
    """Add `ip`/32 to `lo` in this private namespace (no-op if already there)."""
    address = str(ipaddress.IPv4Address(ip))
    assert_private_netns()
    if address in loopback_addresses():
        return
    result = subprocess.run(["ip", "address", "add", f"{address}/32", "dev", "lo"],
                            capture_output=True, text=True, timeout=10)
    # A concurrent caller may have added it between the check and the add.
    if result.returncode != 0 and address not in loopback_addresses():
        raise RuntimeError(f"cannot add {address}/32 to lo: {result.stderr.strip()}")


def loopback_addresses() -> list[str]:
    """IPv4 addresses currently on `lo`."""
    out = _ip_json("address", "show", "dev", "lo")
    return [a["local"] for link in out for a in link.get("addr_info", [])
            if a.get("family") == "inet"]


def _link_flags(name: str) -> list[str]:
    return _ip_json("link", "show", "dev", name)[0].get("flags", [])


def _ip_json(*args: str):
    result = subprocess.run(["ip", "-json", *args], capture_output=True, text=True,
                            timeout=10, check=True)
    return json.loads(result.stdout)
