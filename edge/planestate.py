"""What the Go data plane is told about this node's picture (edge.cache), as JSON.

One function per record, used for the whole state (at start and after the
data plane restarts) and for each change alike, so the two never disagree.
"""

from .cache import State
from .store import Socket, User


def user_json(u: User) -> dict:
    return {"user_id": u.user_id, "user_name": u.user_name, "sshkey": u.sshkey}


def socket_json(state: State, s: Socket) -> dict:
    return {"socket_id": s.socket_id, "user_id": s.user_id, "dnsname": s.dnsname,
            "socket_type": s.socket_type, "tcp_port": s.tcp_port or 0,
            "protected_socket": s.protected_socket,
            "protected_username": s.protected_username,
            "protected_password_hash": s.protected_password_hash,
            "cloud_authentication_enabled": s.cloud_authentication_enabled,
            "local_ports": [t.local_port for t in state.tunnels_of(s.socket_id)]}


def full_state(state: State) -> dict:
    return {"users": [user_json(u) for u in state.users.values()],
            "sockets": [socket_json(state, s) for s in state.sockets.values()]}
