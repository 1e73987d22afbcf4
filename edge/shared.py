"""Files every node of an edge must share: the token secret, the SSH host key, the internal CA.

Why it is shaped this way: a token issued by one node must be accepted by
all, one pinned host key (``known_hosts``) must fit every node a tunnel may be
placed on, and visitors who trust the edge's CA must trust every node. So
with a shared store (PostgreSQL) these files live in the store too: the
first node to start puts its own there, every other node takes the stored
one, whatever it had. They are written 0600 from the moment they exist
(never chmod'ed after). With SQLite (one node) nothing changes: the files in
the data directory are the edge's.
"""

import logging
import os
from pathlib import Path

from .store import SqlStore

log = logging.getLogger(__name__)

KEY_FILES = ("jwt-secret", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")
CA_FILES = ("ca.crt", "ca.key")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def share(store: SqlStore, data_dir: Path, names: tuple) -> bool:
    """Make the files ``names`` the edge-wide ones; True when a local file was replaced.

    Files are shared as one group (a key with its .pub, a CA with its key): the
    first group stored wins whole."""
    if not store.shared:
        return False
    local = {}
    for name in names:
        path = data_dir / name
        local[name] = path.read_text() if path.exists() else None
    if any(v is None for v in local.values()):
        stored = {n: await store.meta_get("file:" + n) for n in names}
        if not all(stored.values()):
            return False              # nothing to share yet (the data plane makes the CA)
    else:
        got = await store.meta_setdefault({"file:" + n: local[n] for n in names})
        stored = {n: got["file:" + n] for n in names}
    changed = False
    for name in names:
        if stored[name] and stored[name] != local[name]:
            _write(data_dir / name, stored[name])
            changed = True
    if changed:
        log.info("took the edge's shared %s from the store", ", ".join(names))
    return changed
