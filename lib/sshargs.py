"""The ssh command line, and what an ssh exit means, in plain words.

Pure functions, as in sshuttle's ssh.py: the argv is a list (never a shell
string) so no ClusterIP, user name or path is ever parsed by a shell, and a
test can read exactly what would run. `-F none` makes the child ignore the
machine's ssh_config, so the same options mean the same thing on a laptop and
in the container.
"""

import dataclasses
import re
import shutil


@dataclasses.dataclass(frozen=True)
class TunnelSpec:
    """One reverse forward: the edge's tunnel port -> ClusterIP:port, as the account's user."""

    local_port: int
    target_host: str
    target_port: int
    user_name: str
    server: str = ""        # the tunnel's `tunnel_server`: the edge node it is placed on ("" = --ssh-host)


@dataclasses.dataclass(frozen=True, order=True)
class Endpoint:
    """Where, and as whom, an ssh session connects: forwards share a session only if all three agree."""

    host: str
    port: int
    user_name: str

    @property
    def label(self):
        return f"{self.user_name}@{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class SshSettings:
    host: str
    port: int
    identity_file: str
    known_hosts_file: str
    # True when the operator gave a known_hosts file: an unknown key is refused.
    # False means trust on first use: the first key is recorded and then enforced.
    strict_host_keys: bool
    keepalive_interval: int = 5
    keepalive_count: int = 3
    connect_timeout: int = 10
    binary: str = "ssh"


class SshMissing(RuntimeError):
    pass


def resolve_ssh(name="ssh"):
    """The ssh binary's path, resolved once at start so a missing client fails loudly, not per tunnel."""
    path = shutil.which(name)
    if not path:
        raise SshMissing(f"the OpenSSH client ({name!r}) is not installed or not on PATH; "
                         "install openssh-client")
    return path


def endpoint_of(spec, settings):
    """The one place that says which SSH endpoint a tunnel connects to: the edge node it is placed on.

    An edge of several nodes puts each tunnel on one of them and names that node's host in the
    tunnel's `tunnel_server` (a host, no port: every node listens for SSH on the same port, which is
    --ssh-port). An empty one (the historical service, an older edge) means --ssh-host. The supervisor's
    sessions are keyed by this Endpoint, so each node's tunnels get sessions of their own.
    """
    return Endpoint(spec.server or settings.host, settings.port, spec.user_name)


def host_key_alias(settings):
    """The name every node's host key is checked under: --ssh-host's known_hosts entry.

    The nodes of one edge share one SSH host key (edge/README.md), so the line an operator pinned for
    --ssh-host (`ssh-keyscan -p 2222 <host>`: `[host]:2222 ssh-ed25519 ...`), or the one recorded on
    first use, vouches for every node a tunnel is placed on; a node with another key is refused.
    With HostKeyAlias ssh adds no port to the name, so the alias carries it as known_hosts writes it.
    """
    return settings.host if settings.port == 22 else f"[{settings.host}]:{settings.port}"


def _forward(spec):
    target = f"[{spec.target_host}]" if ":" in spec.target_host else spec.target_host
    return f"{spec.local_port}:{target}:{spec.target_port}"


def _options(settings):
    return [
        "-o", "IdentitiesOnly=yes",
        # AES-GCM first: with AES-NI on both ends it costs the edge less than OpenSSH's default
        # chacha20-poly1305 (edge CPU per proxied request -15..45% in make bench's side test).
        "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
        "-o", "BatchMode=yes",
        "-o", "PasswordAuthentication=no",
        "-o", "ExitOnForwardFailure=yes",
        "-o", f"ServerAliveInterval={settings.keepalive_interval}",
        "-o", f"ServerAliveCountMax={settings.keepalive_count}",
        "-o", f"ConnectTimeout={settings.connect_timeout}",
        "-o", f"StrictHostKeyChecking={'yes' if settings.strict_host_keys else 'accept-new'}",
        "-o", f"UserKnownHostsFile={settings.known_hosts_file}",
        "-o", f"HostKeyAlias={host_key_alias(settings)}",
        "-o", "LogLevel=ERROR",
    ]


def master_argv(endpoint, settings, control_path, log_path):
    """An ssh session that holds forwards added later through its control socket (`-M -S`).

    `-f` as for a single tunnel: the foreground exits 0 once the edge accepted the key (no forwards
    yet), and the process that holds the connection stays. It carries no forward of its own, so a
    forward the edge refuses never ends it (ExitOnForwardFailure covers only forwards on the command
    line); each forward's own answer comes from `forward_argv`.
    """
    return [
        settings.binary, "-F", "none", "-f", "-N", "-T", "-E", log_path,
        "-M", "-S", control_path, "-o", "ControlPersist=no",
        "-l", endpoint.user_name, "-p", str(endpoint.port), "-i", settings.identity_file,
        *_options(settings), endpoint.host,
    ]


def forward_argv(specs, endpoint, settings, control_path, cancel=False):
    """`ssh -O forward` (or `-O cancel`) of remote forwards (a TunnelSpec, or several) in a running session.

    The master sends the edge a tcpip-forward request and answers this client only when the edge has
    answered: exit 0 is the edge's yes (ssh(1), -O; mux.c). Several `-R` in one client are asked one
    after the other on its one control connection (mux.c, mux_client_forwards), a refusal does not stop
    the others, and each refusal is said on stderr with its port (refused_ports): so "up" stays ssh's
    own report, per forward, as with ExitOnForwardFailure on a single tunnel, for one process spawned
    per batch instead of one per forward.
    """
    specs = [specs] if isinstance(specs, TunnelSpec) else list(specs)
    return [
        settings.binary, "-F", "none", "-S", control_path, "-O", "cancel" if cancel else "forward",
        *[arg for spec in specs for arg in ("-R", _forward(spec))], "-l", endpoint.user_name,
        "-p", str(endpoint.port), "-i", settings.identity_file, "-o", "LogLevel=ERROR", endpoint.host,
    ]


_REFUSED = re.compile(r"remote port forwarding failed for listen port (\d+)")


def refused_ports(stderr_text):
    """The listen ports an `ssh -O forward` client says the edge refused (mux.c's message per refusal)."""
    return {int(port) for port in _REFUSED.findall(stderr_text)}


def said_about(stderr_text, port):
    """What such a client said about one forward (its refusal names the port), or all it said."""
    about = [line for line in stderr_text.splitlines() if f"port {port}" in line]
    return "\n".join(about) if about else stderr_text


def ssh_argv(spec, settings, log_path=None, foreground=False):
    """The argv of one tunnel. `-f` with ExitOnForwardFailure: the foreground process exits 0 only once
    the edge accepted the forward (see lib/processes.py); `-E` keeps the background one's last words.
    `foreground`: a plain `ssh -N` that stays the process it was started as (the benchmarks' floor)."""
    mode = [] if foreground else ["-f"]
    log = ["-E", log_path] if log_path and not foreground else []
    return [
        settings.binary, "-F", "none", *mode, "-N", "-T", *log,
        "-R", _forward(spec),
        "-l", spec.user_name,
        "-p", str(settings.port),
        "-i", settings.identity_file,
        *_options(settings),
        settings.host,
    ]


# Substrings of ssh's stderr, most specific first, and what they mean for a user.
_EXPLANATIONS = (
    ("remote port forwarding failed", "the edge refused the forward of the tunnel port "
                                      "(the edge still holds an earlier session, or the tunnel is gone)"),
    ("Permission denied", "the edge refused the key: is the private key the one registered with the account?"),
    ("Host key verification failed", "the edge's host key does not match known_hosts "
                                     "(a changed or impersonated edge)"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "the edge's host key does not match known_hosts "
                                               "(a changed or impersonated edge)"),
    ("Could not resolve hostname", "the edge's SSH host name does not resolve"),
    ("Connection refused", "nothing listens at the edge's SSH address"),
    ("Connection timed out", "the edge's SSH address did not answer"),
    ("Timeout, server", "the edge stopped answering keepalives"),
    ("Connection reset", "the edge closed the connection"),
    ("closed by remote host", "the edge closed the connection"),
    ("Load key", "ssh could not read the private key"),
    ("Control socket connect", "the ssh session this forward belongs to has ended"),
    ("Connection to master closed", "the ssh session this forward belongs to has ended"),
    ("invalid format", "ssh could not read the private key"),
)


def explain_exit(returncode, stderr_tail):
    """One line for the log: why the child ended, then ssh's own last words."""
    last = stderr_tail.strip().splitlines()[-1].strip() if stderr_tail.strip() else ""
    if returncode is not None and returncode < 0:
        why = f"killed by signal {-returncode}"
    else:
        why = next((text for needle, text in _EXPLANATIONS if needle in stderr_tail), None)
        if why is None:
            why = "the connection to the edge ended" if returncode == 255 else f"ssh exited with code {returncode}"
    return f"{why} (ssh: {last})" if last else why
