"""Secrets the edge keeps in its store, encrypted at rest (AES-256-GCM).

Why it is shaped this way: the store (PostgreSQL, its replicas and backups)
is run by others and copied around; a private key in it must not be readable
by whoever reads a dump. The key never enters the database: with many nodes
it is derived (HKDF-SHA256) from the cluster secret every node already has
(``--cluster-secret-file``); with one node it is ``store-key`` in the data
directory (created 0600 on first start). Each record is bound to its key in
the store (the associated data), so a sealed value cannot be moved to
another row.
"""

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE = "store-key"
_INFO = b"mysocketd edge: secrets in the store"


class Sealer:
    def __init__(self, secret: bytes):
        self._aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                 info=_INFO).derive(secret))

    def seal(self, text: str, name: str) -> str:
        nonce = secrets.token_bytes(12)
        return "v1:" + base64.b64encode(
            nonce + self._aead.encrypt(nonce, text.encode(), name.encode())).decode()

    def open(self, sealed: str, name: str) -> str:
        """The text; ValueError when it was sealed with another key, for another name, or is damaged."""
        if not sealed.startswith("v1:"):
            raise ValueError("not a sealed record")
        raw = base64.b64decode(sealed[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], name.encode()).decode()
        except InvalidTag:
            raise ValueError("sealed with another key") from None


def store_secret(data_dir: Path, cluster_secret_file: str) -> bytes:
    """The secret the sealing key comes from: the cluster secret, or this node's store-key."""
    if cluster_secret_file:
        return Path(cluster_secret_file).read_bytes().strip()
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_bytes().strip()
