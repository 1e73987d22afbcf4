"""The API's records as the contract spells them (shared/mysocket-api.md; typos included).

Pure functions, so the exact field names live in one place and are tested
without a server; edge.api decides which records and what a node knows of
them (placement, connected state).
"""

from typing import Optional

from .routetables import digest
from .store import Socket, Tunnel, User

SOCKET_PORTS = {"http": [80, 443], "https": [80, 443], "tls": [443]}


def user_json(user: User) -> dict:
    return {"name": user.name, "email": user.email, "user_id": user.user_id,
            "user_name": user.user_name, "sshkey": user.sshkey}


def tunnel_json(tunnel: Tunnel, tunnel_server: str, live: Optional[set] = None) -> dict:
    """A tunnel; ``connected`` only when ``live`` (the ports forwarded anywhere) is known."""
    out = {"tunnel_id": tunnel.tunnel_id, "local_port": tunnel.local_port,
           "tunnel_server": tunnel_server, "owner": tunnel.owner, "backend": tunnel.backend}
    if live is not None:
        out["connected"] = tunnel.local_port in live
    return out


def socket_json(sock: Socket, user: User, tunnels: list) -> dict:
    """A socket with its ``tunnels`` (already rendered by tunnel_json)."""
    return {
        "socket_id": sock.socket_id, "name": sock.name, "dnsname": sock.dnsname,
        "socket_type": sock.socket_type,
        "socket_tcp_ports": SOCKET_PORTS.get(sock.socket_type, [sock.tcp_port]),
        "protected_socket": sock.protected_socket,
        "protected_username": sock.protected_username,
        "cloud_authentication_enabled": sock.cloud_authentication_enabled,
        "cloud_authentication_email_allowed_addressses": list(sock.allowed_addresses),
        "cloud_authentication_email_allowed_domains": list(sock.allowed_domains),
        "upstream_protocol": sock.upstream_protocol,
        "user_name": user.user_name,
        "routes_digest": digest(sock.routes),
        "address": sock.address,
        "tunnels": tunnels,
    }
