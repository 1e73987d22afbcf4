"""Where the control-plane binaries live, and what to do when they are missing.

devcluster/build.sh compiles kube-apiserver, kubectl and etcd from the Go module
proxy into .cache/k8s/<version>/ (gitignored; a cold build takes 10-20 minutes),
so nothing here downloads or builds: it only finds the files and, when one is
missing, says in one sentence how to get it. The version pins live in
devcluster/versions.env, which build.sh reads too; both honour the same
environment overrides (K8S_VERSION, ETCD_VERSION, K8S_CACHE).
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict:
    text = (Path(__file__).with_name("versions.env")).read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


K8S_VERSION = os.environ.get("K8S_VERSION") or _pins()["K8S_VERSION"]
ETCD_VERSION = os.environ.get("ETCD_VERSION") or _pins()["ETCD_VERSION"]


class BinaryMissing(RuntimeError):
    """A control-plane binary has not been built yet."""


def cache_dir() -> Path:
    base = os.environ.get("K8S_CACHE") or REPO_ROOT / ".cache" / "k8s"
    return Path(base) / K8S_VERSION


def binary(name: str) -> Path:
    """Absolute path of a built binary (kube-apiserver, kubectl or etcd)."""
    path = cache_dir() / name
    if not os.access(path, os.X_OK):
        raise BinaryMissing(
            f"{path} is missing: run `make build` (devcluster/build.sh) first"
        )
    return path
