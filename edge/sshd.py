"""The edge's SSH server (asyncssh): public-key login and reverse forwards.

Why it is shaped this way:
- The SSH user name is the account's ``user_name``; the only accepted
  credential is the public key registered with that account (any key type
  asyncssh reads: ed25519, rsa, ecdsa). No passwords, no keyboard-interactive.
- A ``tcpip-forward`` is granted only for a port that is the ``local_port`` of
  one of the account's own tunnels and that no live session holds (the
  ``ForwardRegistry`` decides; see edge.forwards). Everything else is refused
  and logged, so ``ssh -o ExitOnForwardFailure=yes`` exits and its supervisor
  retries, exactly as against a real sshd.
- Clients that do not pass ``-N`` get a session that accepts a PTY and a shell
  request, prints a banner naming the sockets this session serves and then
  stays open, running nothing and ignoring input, until the client leaves.
  ``exec`` and subsystems are refused. ``direct-tcpip`` (``ssh -L``) is refused
  by asyncssh's default.
- OpenSSH's keepalives (``keepalive@openssh.com`` global requests) are answered
  by asyncssh itself; the server sends its own keepalives too, so half-dead
  sessions free their ports within about a minute.
"""

import logging
from pathlib import Path
from typing import Optional

import asyncssh

from .forwards import Forward, ForwardRegistry
from .state import EdgeState
from .store import User

log = logging.getLogger(__name__)

HOST_KEY_FILE = "ssh_host_ed25519_key"
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT_MAX = 4


def load_or_create_host_key(data_dir: Path) -> asyncssh.SSHKey:
    path = data_dir / HOST_KEY_FILE
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(path))
        path.chmod(0o600)
        key.write_public_key(str(path) + ".pub")
        log.info("created SSH host key %s", path)
    key = asyncssh.read_private_key(str(path))
    log.info("SSH host key fingerprint %s", key.get_fingerprint("sha256"))
    return key


def parse_public_key(line: str) -> Optional[asyncssh.SSHKey]:
    """The key of an OpenSSH public key line, or None if it is not one."""
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError, TypeError):
        return None


class EdgeSSHServer(asyncssh.SSHServer):
    """One instance per SSH connection."""

    def __init__(self, ctx: EdgeState):
        self._ctx = ctx
        self._conn = None
        self._user: Optional[User] = None
        self._peer = "?"

    # -- connection and authentication ----------------------------------
    def connection_made(self, conn):
        self._conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self._peer = "{}:{}".format(peer[0], peer[1])
        self._ctx.ssh_connections.add(conn)

    def connection_lost(self, exc):
        self._ctx.ssh_connections.discard(self._conn)
        log.info("SSH session ended: user=%s peer=%s%s",
                 self._user.user_name if self._user else "-", self._peer,
                 " ({})".format(exc) if exc else "")

    def begin_auth(self, username):
        self._user = self._ctx.store.user_by_name(username)
        return True

    def password_auth_supported(self):
        return False

    def kbdint_auth_supported(self):
        return False

    def public_key_auth_supported(self):
        return True

    def validate_public_key(self, username, key):
        user = self._user
        registered = parse_public_key(user.sshkey) if user else None
        if registered is not None and registered.public_data == key.public_data:
            return True
        log.info("SSH key refused: user=%s peer=%s key=%s", username, self._peer,
                 key.get_fingerprint("sha256"))
        return False

    def auth_completed(self):
        log.info("SSH login: user=%s peer=%s", self._user.user_name, self._peer)

    # -- forwards and sessions ------------------------------------------
    def server_requested(self, listen_host, listen_port):
        user = self._user
        owner = self._ctx.store.owner_of_local_port(listen_port)
        if owner is None or owner[0] != user.user_id:
            log.warning("forward refused: user=%s port=%d: not a tunnel of this account",
                        user.user_name, listen_port)
            return False
        forward = Forward(local_port=listen_port, listen_host=listen_host,
                          user_name=user.user_name, dnsname=owner[1], conn=self._conn)
        listener = self._ctx.registry.claim(forward)
        if listener is None:
            log.warning("forward refused: user=%s port=%d: port already bound "
                        "by another session", user.user_name, listen_port)
            return False
        return listener

    def session_requested(self):
        return BannerSession(self._ctx.registry, self._conn, self._user.user_name)


class BannerSession(asyncssh.SSHServerSession):
    """A shell that runs nothing: a banner, then silence until the client leaves."""

    def __init__(self, registry: ForwardRegistry, conn, user_name: str):
        self._registry = registry
        self._conn = conn
        self._user_name = user_name
        self._chan = None
        self._newline = "\n"

    def connection_made(self, chan):
        self._chan = chan

    def pty_requested(self, term_type, term_size, term_modes):
        self._newline = "\r\n"
        return True

    def shell_requested(self):
        return True

    def exec_requested(self, command):
        log.info("exec refused: user=%s (this edge runs no commands)", self._user_name)
        return False

    def subsystem_requested(self, subsystem):
        log.info("subsystem %r refused: user=%s", subsystem, self._user_name)
        return False

    def session_started(self):
        self._chan.write(self._newline.join(self.banner_lines()) + self._newline)

    def banner_lines(self) -> list:
        forwards = self._registry.of_connection(self._conn)
        lines = ["mysocketd edge: hello {}.".format(self._user_name)]
        if forwards:
            lines.append("This session serves:")
            lines += ["  {}  (local_port {})".format(f.dnsname, f.local_port)
                      for f in sorted(forwards, key=lambda f: f.local_port)]
        else:
            lines.append("This session serves no socket (no accepted -R forward).")
        lines.append("Nothing runs here; input is ignored. Type ~. to disconnect.")
        return lines

    def data_received(self, data, datatype):
        return None

    def eof_received(self):
        return True   # keep the channel open: the session ends when the client leaves

    def break_received(self, msec):
        return True


async def start_ssh_server(ctx: EdgeState, host: str, port: int, host_key):
    """Listen for SSH; returns the asyncssh acceptor (``.get_port()``, ``.close()``)."""
    return await asyncssh.listen(
        host, port, server_factory=lambda: EdgeSSHServer(ctx),
        server_host_keys=[host_key], line_editor=False,
        keepalive_interval=KEEPALIVE_INTERVAL, keepalive_count_max=KEEPALIVE_COUNT_MAX,
        login_timeout=30, agent_forwarding=False, x11_forwarding=False,
        allow_pty=True)
