"""Guard and helpers for the private network namespace the tests run in.

`make test` runs pytest under `unshare --net` with only `lo` up, so that
everything the tests start can listen on 127.0.0.1 and on Service ClusterIPs
(added to `lo` here) without ever touching the host's network. Tests that need
that isolation call assert_private_netns(), which fails loudly -- a silent skip
would count as a pass -- and says how to run them properly.

What matters is that nothing here can reach off the machine, not that `lo` is
alone: a real node (devcluster.machine) adds a veth to its own nested
namespace. So the guard accepts `lo` (up), veths and bridges, and refuses any
other kind of link (a NIC, a tunnel) and any default route.

Links and routes are read through netlink (`ip -json`), per network namespace,
not from /sys/class/net, which shows the namespace of whoever mounted sysfs.
"""

import ipaddress
import json
import subprocess

HOW_TO_RUN = "run it through `make test` (pytest inside `unshare --net` with only lo up)"
VIRTUAL_KINDS = {"veth", "bridge"}      # what devcluster itself adds (a node's uplink)


class NotInPrivateNetns(RuntimeError):
    """The process is not in a private network namespace with no route off the machine."""


def assert_private_netns() -> None:
    """Raise NotInPrivateNetns unless `lo` is up, every other link is a veth or a bridge,
    and there is no default route."""
    links = _ip_json("-details", "link", "show")
    others = sorted(f"{link['ifname']} ({link.get('linkinfo', {}).get('info_kind') or 'a device'})"
                    for link in links if link["ifname"] != "lo"
                    and link.get("linkinfo", {}).get("info_kind") not in VIRTUAL_KINDS)
    if others:
        raise NotInPrivateNetns(
            f"this test needs a private network namespace, but interfaces {others} "
            f"are visible: {HOW_TO_RUN}")
    defaults = [r for family in ("-4", "-6") for r in _ip_json(family, "route", "show")
                if r.get("dst") == "default"]
    if defaults:
        via = ", ".join(f"{r.get('gateway', '?')} dev {r.get('dev', '?')}" for r in defaults)
        raise NotInPrivateNetns(
            f"this network namespace has a default route (via {via}), a route off the machine: {HOW_TO_RUN}")
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
