"""The private key and the edge's host key, prepared for the ssh children.

The mounted Secret is read-only and its files are group- or world-readable
(ssh refuses such a key), so the key is copied into the controller's private
state directory with mode 0600 before any child uses it. `ssh-keygen -y`
then proves, once at start, that OpenSSH can read it (any key type it knows;
not passphrase-protected), instead of every child failing later.

Host keys: with a known_hosts file from the operator, ssh checks strictly.
Without one, the first key the edge shows is recorded (trust on first use)
in the state directory and enforced from then on; its fingerprint is logged
so an operator can compare it with the edge's.

Whoever can replace a file in the state directory can swap the key copy or
the TOFU known_hosts, so the directory must be ours (tightened to 0700), or
root's and closed, or root's with the sticky bit: the manifest's emptyDir
with `medium: Memory` is a tmpfs, which the kubelet leaves root-owned, mode
3777 with an fsGroup, and there nobody else can rename or delete what we
create. Files are created exclusively (O_EXCL|O_NOFOLLOW), never through a
name someone else prepared, and an existing known_hosts must be our own
regular file.
"""

import base64
import contextlib
import hashlib
import os
import secrets
import stat
import subprocess

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


class KeyProblem(RuntimeError):
    """The private key cannot be used; the message says why and what to do."""


class StateDirUnsafe(KeyProblem):
    """Someone else could replace what the state directory holds; the message says how to fix it."""


def judge_state_dir(owner, mode, euid):
    """None if safe as it is, "tighten" if ours but open to others, else why it is unsafe.

    Pure, so the rules are table-tested without other users on the machine.
    """
    if owner == euid:
        return "tighten" if mode & 0o077 else None
    if owner != 0:
        return (f"is owned by uid {owner}, not by this process (uid {euid}): its owner could replace the key "
                f"copy or known_hosts; use a directory of uid {euid} with mode 0700")
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return (f"is writable by others without the sticky bit (mode {stat.S_IMODE(mode):04o}): they could "
                f"replace the key copy or known_hosts; use a directory of uid {euid} with mode 0700, or an "
                "emptyDir with medium: Memory (a tmpfs, sticky)")
    return None


def secure_state_dir(state_dir):
    """Create the state directory if needed; tighten it if it is ours; StateDirUnsafe if others can swap files in it."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    if os.path.islink(state_dir):
        raise StateDirUnsafe(f"the state directory {state_dir} is a symbolic link: whoever made it chooses "
                             "where the key copy, known_hosts and the ssh logs go; use a real directory")
    st = os.stat(state_dir)
    verdict = judge_state_dir(st.st_uid, st.st_mode, os.geteuid())
    if verdict == "tighten":
        os.chmod(state_dir, 0o700)
    elif verdict:
        raise StateDirUnsafe(f"the state directory {state_dir} {verdict}")


def install_private_key(source, state_dir):
    """Copy the key to <state_dir>/id_mysocket (0600); return (path, public key line)."""
    try:
        with open(source, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise KeyProblem(f"no private key at {source}: mount the Secret's privatekey there "
                        "or pass --private-key") from None
    except OSError as e:
        raise KeyProblem(f"cannot read the private key {source}: {e.strerror}") from None
    if not data.strip():
        raise KeyProblem(f"the private key file {source} is empty")
    secure_state_dir(state_dir)
    path = os.path.join(state_dir, "id_mysocket")
    tmp = f"{path}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, _CREATE, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if data.endswith(b"\n") else data + b"\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    result = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", path], capture_output=True, text=True,
                            timeout=10, check=False)
    if result.returncode != 0:
        raise KeyProblem(f"OpenSSH cannot use the private key from {source} "
                        "(not a private key, or protected by a passphrase)")
    return path, result.stdout.strip()


def same_key(public_line_a, public_line_b):
    """Compare two OpenSSH public key lines by type and blob, ignoring comments."""
    return (public_line_a or "").split()[:2] == (public_line_b or "").split()[:2]


def prepare_known_hosts(given, state_dir):
    """(known_hosts path, strict): the operator's file checked strictly, else a TOFU file of our own."""
    if given:
        if not os.path.isfile(given):
            raise KeyProblem(f"--known-hosts {given} does not exist")
        return given, True
    secure_state_dir(state_dir)
    path = os.path.join(state_dir, "known_hosts")
    try:
        os.close(os.open(path, _CREATE, 0o600))
    except FileExistsError:
        _own_file(path)                 # kept from an earlier run of this pod: the key trusted then
    return path, False


def _own_file(path):
    """An existing file we are about to trust: a regular file of ours, closed to others."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise KeyProblem(f"{path} is a symbolic link: the trust-on-first-use known_hosts must be a file of "
                         "mysocketd's own; remove it")
    if not stat.S_ISREG(st.st_mode):
        raise KeyProblem(f"{path} is not a regular file; remove it")
    if st.st_uid != os.geteuid():
        raise KeyProblem(f"{path} is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()}): "
                         "it may hold a host key someone else chose; remove it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o600)


def fingerprints(known_hosts_path):
    """SHA256 fingerprints of the keys in a known_hosts file, as ssh-keygen -l prints them."""
    found = []
    try:
        with open(known_hosts_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            try:
                blob = base64.b64decode(fields[2])
            except ValueError:
                continue
            digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            found.append(f"{fields[1]} SHA256:{digest}")
    return found
