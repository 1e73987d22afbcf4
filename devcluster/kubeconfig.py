"""Write kubeconfig files that kubectl and the Python kubernetes client both read.

The file is JSON (a subset of YAML, so every kubeconfig reader accepts it). It
names the CA file by path rather than inlining it: the Python client copies
inline CA data to a temp file per client and only removes those at exit, which
litters /tmp when a test process is killed. The file holds a bearer token,
hence mode 0600.
"""

import json
import os
from pathlib import Path


def write(path: Path, server: str, ca_file: Path, user: str, token: str) -> Path:
    """Write a one-cluster, one-user kubeconfig and return its path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": {
            "server": server,
            "certificate-authority": str(ca_file),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "devcluster", "user": user}}],
        "current-context": user,
        "preferences": {},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    return path
