"""yaml/ as a user applies it: server-side validation of every manifest, and `kubectl apply -k` from plain files.

Each test gets a fresh control plane (about 4 s to start): `apply -k` really
installs the manifests and replaces the Secret, which the session control
plane shared with the other tests must not see, and a fresh one also makes
the dry-run prove that nothing else had to exist first.

Server-side dry run cannot create a Namespace and then validate objects inside
it in the same call (the apiserver answers `namespaces "mysocket" not found`),
so the Namespaces the manifests declare are created for real first. The
kustomization is named yaml/Kustomization (a name kustomize accepts) so that
`kubectl apply -f yaml/`, which reads only *.yaml, *.yml and *.json, never
mistakes it for a Kubernetes object; it is validated through `-k`.
"""

import base64
import json
import shutil
from pathlib import Path

import pytest
import yaml

from devcluster import ControlPlane, assert_private_netns
from edge.testing import ssh_keygen

YAML_DIR = Path(__file__).resolve().parents[2] / "yaml"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fresh_control_plane():
    assert_private_netns()
    with ControlPlane() as cp:
        yield cp


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kubernetes_manifests():
    """Every file `kubectl apply -f yaml/` reads."""
    return sorted(YAML_DIR.glob("*.yaml")) + sorted(YAML_DIR.glob("*.yml")) + sorted(YAML_DIR.glob("*.json"))


@pytest.fixture
def plain_files_dir(tmp_path):
    """yaml/ copied, with the three files the kustomization's secretGenerator reads."""
    target = tmp_path / "yaml"
    shutil.copytree(YAML_DIR, target)
    (target / "email").write_text("ops@example.com\n")
    (target / "password").write_text("correct horse battery staple\n")
    ssh_keygen(target / "id_ed25519")
    return target


def test_every_manifest_passes_server_side_validation(fresh_control_plane, plain_files_dir):
    cp = fresh_control_plane
    manifests = kubernetes_manifests()
    assert {"mysocketd.yaml", "demo-deploy.yaml", "demo-service.yaml"} <= {f.name for f in manifests}
    objects = [d for f in manifests for d in documents(f)]
    for ns in sorted({d["metadata"]["name"] for d in objects if d["kind"] == "Namespace"}):
        cp.kubectl("create", "namespace", ns)

    assert all(d.get("kind") != "Kustomization" for d in objects)
    result = cp.kubectl("apply", "--dry-run=server", "-f", str(YAML_DIR), check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(objects) and all(line.endswith("(server dry run)") for line in lines), result.stdout
    assert cp.kubectl("get", "deployment", "mysocketd", "-n", "mysocket", check=False).returncode != 0

    result = cp.kubectl("apply", "--dry-run=server", "-k", str(plain_files_dir), check=False)
    assert result.returncode == 0, result.stderr
    assert "secret/mysocketd" in result.stdout


def test_apply_k_builds_the_secret_from_plain_files(fresh_control_plane, plain_files_dir):
    cp = fresh_control_plane
    result = cp.kubectl("apply", "-k", str(plain_files_dir), check=False)
    assert result.returncode == 0, result.stderr

    deployment = json.loads(cp.kubectl("get", "deployment", "mysocketd", "-n", "mysocket", "-o", "json").stdout)
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v.get("secret")]
    name = volume["secret"]["secretName"]
    assert name.startswith("mysocketd")
    secret = json.loads(cp.kubectl("get", "secret", name, "-n", "mysocket", "-o", "json").stdout)
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data == {"email": (plain_files_dir / "email").read_bytes(),
                    "password": (plain_files_dir / "password").read_bytes(),
                    "privatekey": (plain_files_dir / "id_ed25519").read_bytes()}
    assert "stringData" not in secret


def test_apply_k_is_idempotent(fresh_control_plane, plain_files_dir):
    """Judged by `kubectl diff`: `apply -k` prints `secret/mysocketd configured` on every run
    even when it sends no change, so its own output cannot tell."""
    cp = fresh_control_plane
    cp.kubectl("apply", "-k", str(plain_files_dir))
    cp.kubectl("apply", "-k", str(plain_files_dir))
    diff = cp.kubectl("diff", "-k", str(plain_files_dir), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
