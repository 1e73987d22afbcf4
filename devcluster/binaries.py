"""Where the built binaries live, and what to do when they are missing.

devcluster/build.sh compiles the Kubernetes binaries and etcd from the Go module
proxy into .cache/k8s/<version>/, containerd into .cache/containerd/<version>/,
helm into .cache/helm/<version>/, the Gateway API conformance suite (test
binary, CRDs, echo-basic) into .cache/gateway-api/<version>/ and CoreDNS into
.cache/coredns/<version>/ and the sign-in tests' identity provider into
.cache/idp/<version>/ (gitignored; a cold build takes 15-25 minutes),
so nothing here downloads or builds: it only finds the files and, when one
is missing, says in one sentence how to get it. The version pins live
in devcluster/versions.env, which build.sh reads too; both honour the same
environment overrides (K8S_VERSION, ETCD_VERSION, CONTAINERD_VERSION,
HELM_VERSION, GATEWAY_API_VERSION, COREDNS_VERSION, ZITADEL_OIDC_VERSION, K8S_CACHE,
CONTAINERD_CACHE, HELM_CACHE, GATEWAY_API_CACHE, COREDNS_CACHE, IDP_CACHE).
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict:
    text = (Path(__file__).with_name("versions.env")).read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


K8S_VERSION = os.environ.get("K8S_VERSION") or _pins()["K8S_VERSION"]
ETCD_VERSION = os.environ.get("ETCD_VERSION") or _pins()["ETCD_VERSION"]
CONTAINERD_VERSION = os.environ.get("CONTAINERD_VERSION") or _pins()["CONTAINERD_VERSION"]
HELM_VERSION = os.environ.get("HELM_VERSION") or _pins()["HELM_VERSION"]
GATEWAY_API_VERSION = os.environ.get("GATEWAY_API_VERSION") or _pins()["GATEWAY_API_VERSION"]
COREDNS_VERSION = os.environ.get("COREDNS_VERSION") or _pins()["COREDNS_VERSION"]
ZITADEL_OIDC_VERSION = os.environ.get("ZITADEL_OIDC_VERSION") or _pins()["ZITADEL_OIDC_VERSION"]


class BinaryMissing(RuntimeError):
    """A control-plane binary has not been built yet."""


def cache_dir() -> Path:
    base = os.environ.get("K8S_CACHE") or REPO_ROOT / ".cache" / "k8s"
    return Path(base) / K8S_VERSION


def binary(name: str) -> Path:
    """Absolute path of a built Kubernetes binary or etcd."""
    return _built(cache_dir() / name)


def containerd_binary(name: str) -> Path:
    """Absolute path of containerd, containerd-shim-runc-v2 or ctr."""
    base = os.environ.get("CONTAINERD_CACHE") or REPO_ROOT / ".cache" / "containerd"
    return _built(Path(base) / CONTAINERD_VERSION / name)


def helm_binary() -> Path:
    """Absolute path of helm (the chart's tests)."""
    base = os.environ.get("HELM_CACHE") or REPO_ROOT / ".cache" / "helm"
    return _built(Path(base) / HELM_VERSION / "helm")


def gateway_api_dir() -> Path:
    """Where the conformance suite's files live: conformance.test, echo-basic, crds/."""
    base = os.environ.get("GATEWAY_API_CACHE") or REPO_ROOT / ".cache" / "gateway-api"
    return Path(base) / GATEWAY_API_VERSION


def gateway_api_file(name: str) -> Path:
    """Absolute path of conformance.test or echo-basic (built by build.sh)."""
    return _built(gateway_api_dir() / name)


def gateway_api_crds() -> list:
    """The standard-channel CRD manifests of the pinned Gateway API version, sorted."""
    crds = sorted((gateway_api_dir() / "crds").glob("*.yaml"))
    if not crds:
        raise BinaryMissing(f"{gateway_api_dir() / 'crds'} is missing: run `make build` (devcluster/build.sh) first")
    return crds


def coredns_binary() -> Path:
    base = os.environ.get("COREDNS_CACHE") or REPO_ROOT / ".cache" / "coredns"
    return _built(Path(base) / COREDNS_VERSION / "coredns")


def idp_binary() -> Path:
    """The sign-in tests' identity provider (zitadel/oidc's example OP), built by build.sh."""
    base = os.environ.get("IDP_CACHE") or REPO_ROOT / ".cache" / "idp"
    return _built(Path(base) / ZITADEL_OIDC_VERSION / "oidc-op")


def _built(path: Path) -> Path:
    if not os.access(path, os.X_OK):
        raise BinaryMissing(
            f"{path} is missing: run `make build` (devcluster/build.sh) first"
        )
    return path
