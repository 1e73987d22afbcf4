"""The edge's SSH host key and the parsing of accounts' public keys.

Why it is shaped this way:
- The host key is created on first start as an OpenSSH ed25519 private key
  file that is 0600 from the moment it exists (opened with O_EXCL and mode
  0600, never chmod'ed afterwards), next to its ``.pub``; its SHA256
  fingerprint is logged at every start so an operator can publish it.
- Public keys of accounts are checked with ``cryptography`` (ed25519, rsa,
  ecdsa); the Go data plane compares the key blobs at login.
"""

import base64
import hashlib
import logging
import os
from pathlib import Path
from typing import Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

log = logging.getLogger(__name__)

HOST_KEY_FILE = "ssh_host_ed25519_key"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def fingerprint(public_line: str) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def load_or_create_host_key(data_dir: Path) -> Path:
    """Path of the host key (created 0600 on first start); logs its fingerprint."""
    path = data_dir / HOST_KEY_FILE
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        _write_new(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()), 0o600)
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                            serialization.PublicFormat.OpenSSH)
        (data_dir / (HOST_KEY_FILE + ".pub")).write_bytes(pub + b" mysocketd-edge\n")
        log.info("created SSH host key %s", path)
    pub_line = (data_dir / (HOST_KEY_FILE + ".pub")).read_text()
    log.info("SSH host key fingerprint %s", fingerprint(pub_line))
    return path


def parse_public_key(line: str) -> Optional[object]:
    """The key of an OpenSSH public key line, or None if it is not one."""
    try:
        return serialization.load_ssh_public_key(line.strip().encode())
    except (ValueError, TypeError, IndexError):
        return None
