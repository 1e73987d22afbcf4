"""Addresses a socket can have to itself (`--socket-addresses`): a Gateway's address.

A Kubernetes Gateway is an address: whatever reaches it on its ports is the
Gateway's to route, by any Host and any TLS server name, which is what lets
its listeners carry hostnames of their own (the conformance suite's
example.com) without the edge having to trust anybody's claim to a name.
The operator lists the addresses the edge owns and listens on (a CIDR such
as 203.0.113.16/28, or addresses separated by commas; on a test machine any
127.x.y.z); a socket created with `"own_address": true` gets the lowest one
free, and gives it back when it is deleted. Connections to the edge's other
addresses are routed by Host and SNI as before, so nothing changes for
sockets without an address of their own.
"""

import ipaddress

MAX_POOL = 65536


class AddressPool:
    def __init__(self, spec=""):
        self.addresses = _parse(spec)

    def __bool__(self):
        return bool(self.addresses)

    def allocate(self, taken):
        """The lowest address not in `taken` (a set of strings), or None when every one is in use."""
        for address in self.addresses:
            if address not in taken:
                return address
        return None

    def __contains__(self, address):
        return address in self.addresses


def _parse(spec):
    out = []
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        if "/" in part:
            network = ipaddress.ip_network(part, strict=False)
            if network.num_addresses > MAX_POOL + 2:    # said before a single one is listed (an IPv6 /64!)
                raise ValueError(f"{part}: more than {MAX_POOL} addresses")
            hosts = list(network.hosts()) if network.num_addresses > 2 else list(network)
            if len(hosts) > MAX_POOL:
                raise ValueError(f"{part}: more than {MAX_POOL} addresses")
            out += [str(h) for h in hosts]
        else:
            out.append(str(ipaddress.ip_address(part)))
    if len(out) > MAX_POOL:
        raise ValueError(f"more than {MAX_POOL} addresses")
    return list(dict.fromkeys(out))


def check_spec(spec):
    """'' when the flag's value is good, else one line saying what is wrong (for argparse)."""
    try:
        _parse(spec)
    except ValueError as exc:
        return f"--socket-addresses: {exc} (give a CIDR such as 127.100.0.0/24 or addresses separated by commas)"
    return ""
