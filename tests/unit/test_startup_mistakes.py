"""A newcomer's mistakes at start-up: one ERROR line that says what to do, exit status 2, no traceback.

Each case runs mysocketd.py as a user would, in a clean environment: no
MYSOCKETD_* variables, no KUBECONFIG, a HOME without ~/.kube, not in a pod.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster.netns import assert_private_netns

REPO_ROOT = Path(__file__).resolve().parents[2]
EDGE = ["--api-url", "http://127.0.0.1:9/"]
CREDENTIALS = ["--email", "a@example.com", "--password", "pw"]

# A kubeconfig that loads (nothing is contacted until a call is made): it gets start-up past the cluster.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def start(tmp_path, *args, env=None):
    """Run mysocketd.py with `args` in a clean environment; (exit status, ERROR lines, stderr)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MYSOCKETD_", "KUBERNETES_")) and k != "KUBECONFIG"}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    clean.update(HOME=str(home), **(env or {}))
    result = subprocess.run([sys.executable, str(REPO_ROOT / "mysocketd.py"), "--log-format", "text",
                             "--state-dir", str(tmp_path / "state"), *args],
                            capture_output=True, text=True, timeout=60, env=clean, cwd=str(REPO_ROOT))
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    return result.returncode, errors, result.stderr


def assert_one_line(outcome, *words):
    code, errors, stderr = outcome
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr and len(errors) == 1, stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]
    assert len(stderr.strip().splitlines()) <= 2, stderr     # at most the "starting" line before it


def test_no_edge_configured_says_to_run_one(tmp_path):
    assert_one_line(start(tmp_path), "no edge configured", "--api-url", "MYSOCKETD_API_URL", "edge/README.md")


def test_the_hosted_service_is_not_a_default(tmp_path):
    """The dead api.mysocket.io is never tried: without --api-url nothing is contacted."""
    code, errors, _ = start(tmp_path, *CREDENTIALS)
    assert code == 2 and "no edge configured" in errors[0]


@pytest.mark.parametrize("url", ["edge.example.com", "ftp://edge.example.com/", "https://", "REPLACE-ME: your edge"])
def test_an_api_url_that_is_not_one(tmp_path, url):
    assert_one_line(start(tmp_path, "--api-url", url), "is not an http(s) URL", repr(url))


@pytest.mark.parametrize("args, env, words", [
    ([], {}, ("no account e-mail", "--email")),
    (["--email", "a@example.com"], {}, ("no account password", "MYSOCKETD_PASSWORD")),
])
def test_missing_credentials(tmp_path, args, env, words):
    assert_one_line(start(tmp_path, *EDGE, "--secret-dir", str(tmp_path / "no-secret"), *args, env=env), *words)


def test_missing_private_key(tmp_path):
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, "--private-key", str(tmp_path / "nokey")),
                    "no private key at", "--private-key")


@pytest.mark.parametrize("args, env, words", [
    (["--bogus"], {}, ("unrecognized arguments: --bogus", "mysocketd --help")),
    (["--ssh-port", "abc"], {}, ("--ssh-port", "invalid int value: 'abc'")),
    (["--ssh-port", "70000"], {}, ("--ssh-port must be a port number",)),
    (["--health-port", "-1"], {}, ("--health-port must be a port number",)),
    ([], {"MYSOCKETD_SSH_PORT": "abc"}, ("MYSOCKETD_SSH_PORT='abc' is not a number", "--ssh-port")),
    (["--log-level", "LOUD"], {}, ("--log-level must be one of",)),
    (["--log-format", "xml"], {}, ("--log-format must be json or text",)),
    (["--cluster-name", "a/b"], {}, ("--cluster-name must not contain '/'",)),
])
def test_bad_flags(tmp_path, args, env, words):
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, *args, env=env), *words)


@pytest.fixture
def key(tmp_path):
    return ["--private-key", str(keygen(tmp_path / "key"))]


def test_no_cluster(tmp_path, key):
    """The traceback this used to be: kubernetes' ConfigException "Service host/port is not set"."""
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, *key), "no Kubernetes cluster to talk to",
                    "set KUBECONFIG")


def test_uninstall_with_no_cluster(tmp_path):
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, "--uninstall"), "no Kubernetes cluster to talk to")


def test_kubeconfig_that_does_not_exist(tmp_path, key):
    missing = tmp_path / "nowhere" / "config"
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, *key, env={"KUBECONFIG": str(missing)}),
                    f"the kubeconfig {missing} does not exist")


@pytest.mark.parametrize("text, words", [
    ("{{{ not yaml", "cannot use the kubeconfig"),
    ("apiVersion: v1\nkind: Config\n", "cannot use the kubeconfig"),
    (KUBECONFIG.replace("current-context: x", "current-context: gone"), "cannot use the kubeconfig"),
])
def test_unusable_kubeconfig(tmp_path, key, text, words):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, *key, env={"KUBECONFIG": str(path)}), words, str(path))


def test_kubeconfig_that_is_a_directory(tmp_path, key):
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, *key, env={"KUBECONFIG": str(tmp_path)}),
                    "cannot use the kubeconfig")


def test_in_a_pod_without_a_service_account_token(tmp_path, key):
    assert not Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(), "this machine is a pod"
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert_one_line(start(tmp_path, *EDGE, *CREDENTIALS, *key, env=pod), "cannot use this pod's ServiceAccount",
                    "automountServiceAccountToken")


def test_health_port_taken(tmp_path, key):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    assert_private_netns()                      # both listen on every address: only inside `make test`'s netns
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = start(tmp_path, *EDGE, *CREDENTIALS, *key, "--cluster-name", "test", "--health-port", str(port),
                        env={"KUBECONFIG": str(kubeconfig)})
    code, errors, stderr = outcome
    assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert len(errors) == 1 and f"cannot serve /healthz on port {port}" in errors[0], errors
