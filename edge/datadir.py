"""The data directory: private to the edge's user (0700, every file in it 0600).

Why it is shaped this way: the directory holds the database (password hashes,
every account's key), the token-signing secret, the CA and host keys. The
edge sets its umask to 077 before it creates anything, so every file any part
of it makes (SQLite's -wal and -shm files, the Go data plane's CA and ACME
files, which inherit the umask) is private from the moment it exists, without
a chmod per file. A directory left by an older edge with wider modes is
tightened at start, and the log says what was changed.
"""

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077


def prepare_data_dir(path: Path) -> None:
    """Create path 0700 (or tighten it and its contents), and set the umask to 077."""
    os.umask(PRIVATE_UMASK)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tightened = []
    for entry in [path, *path.rglob("*")]:
        try:
            st = entry.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
            continue
        entry.chmod(0o700 if stat.S_ISDIR(st.st_mode) else 0o600)
        tightened.append(entry.name or str(entry))
    if tightened:
        log.warning("data dir %s: made private (0700/0600) what other users could read: %s",
                    path, ", ".join(sorted(tightened)))
