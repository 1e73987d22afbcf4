"""What the Go data plane is told about this node's picture (edge.cache), as JSON.

One function per record, used for the whole state (at start and after the
data plane restarts, ``PUT /state``) and for each change (``PATCH /state``:
only the records that changed), so the two never disagree. A socket carries
its tunnels with the node each is placed on: the data plane serves a tunnel
connected here itself and carries a request for one placed elsewhere to that
node (edge/dataplane/internal/nodes). A socket with a route table carries it
and each tunnel the backend it serves; the data plane compiles the table once.
"""

from .cache import Delta, State
from .store import Node, Socket, User


def user_json(u: User) -> dict:
    return {"user_id": u.user_id, "user_name": u.user_name, "sshkey": u.sshkey}


def socket_json(state: State, s: Socket) -> dict:
    tunnels = state.tunnels_of(s.socket_id)
    return {"socket_id": s.socket_id, "user_id": s.user_id, "dnsname": s.dnsname,
            "socket_type": s.socket_type, "tcp_port": s.tcp_port or 0,
            "protected_socket": s.protected_socket,
            "protected_username": s.protected_username,
            "protected_password_hash": s.protected_password_hash,
            "cloud_authentication_enabled": s.cloud_authentication_enabled,
            "allowed_addresses": list(s.allowed_addresses),
            "allowed_domains": list(s.allowed_domains),
            "upstream_protocol": s.upstream_protocol,
            "local_ports": [t.local_port for t in tunnels],
            "tunnels": [{"local_port": t.local_port, "node": t.node, "backend": t.backend}
                        for t in tunnels],
            "routes": s.routes, "address": s.address,
            "hostnames": [c["hostname"] for c in s.hostnames if c.get("verified")]}   # proven only


def full_state(state: State) -> dict:
    return {"users": [user_json(u) for u in state.users.values()],
            "sockets": [socket_json(state, s) for s in state.sockets.values()]}


def delta_json(state: State, delta: Delta) -> dict:
    """Only what changed, as the picture has it now: records put (whole) and ids gone."""
    users = {k: state.users.get(k) for k in delta.users}
    sockets = {k: state.sockets.get(k) for k in delta.sockets}
    return {"users": [user_json(u) for u in users.values() if u is not None],
            "users_gone": [k for k, u in users.items() if u is None],
            "sockets": [socket_json(state, s) for s in sockets.values() if s is not None],
            "sockets_gone": [k for k, s in sockets.items() if s is None]}


def nodes_json(me: Node, live: list) -> dict:
    """This node's name, the live nodes' links, public addresses and DNS-01 values (``PUT
    /nodes``: the links between nodes and the edge's DNS answers)."""
    return {"self": me.name, "nodes": [
        {"name": n.name, "link": n.link, "tunnel_server": n.tunnel_server,
         "addresses": [a for a in n.addresses.split(",") if a],
         "challenge": [v for v in n.challenge.split(",") if v]}
        for n in live]}
