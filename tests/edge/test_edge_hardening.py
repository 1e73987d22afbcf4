"""The control plane's doors (issue 19): the API before the data plane is up, a private
data directory, single-use invite tokens, a per-account share of the public tcp ports."""

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from edge.binary import ensure_built
from edge.testing import REPO_ROOT, EdgeProcess, ssh_keygen
from edgetest_helpers import Account, new_socket

pytestmark = pytest.mark.timeout(90)

TCP_PORTS_PER_ACCOUNT = 2


@pytest.fixture(scope="module")
def invites(tmp_path_factory):
    path = tmp_path_factory.mktemp("invites") / "invites"
    path.write_text("first-token\nsecond-token\nthird-token\nacct-1\nacct-2\n")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A data dir left by an older edge: created 0755, with a 0644 file in it."""
    work = tmp_path_factory.mktemp("hardened")
    data = work / "edge-data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "left-by-an-old-edge").write_text("x")
    os.chmod(data / "left-by-an-old-edge", 0o644)
    return work


@pytest.fixture(scope="module")
def edge(workdir, invites):
    # The new limit by its environment variable (an older edge ignores it, and can be
    # tried), set for the whole module: a restart reads it again.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EDGE_TCP_PORTS_PER_ACCOUNT", str(TCP_PORTS_PER_ACCOUNT))
        with EdgeProcess(workdir, admin=True, extra_args=(
                "--registration", "invite", "--invite-tokens-file", str(invites))) as proc:
            yield proc


def register(edge, email, token, key):
    return edge.api("POST", "/user", {"name": "n", "email": email, "password": "pw",
                                      "sshkey": key, "invite_token": token})


def test_the_data_dir_and_every_file_in_it_are_private(edge, invites, tmp_path):
    key = ssh_keygen(tmp_path / "k")
    assert register(edge, "private@example.com", "third-token", key).status == 200
    # everything the edge wrote so far (database, WAL, secret, host and CA keys, the CA)
    entries = [edge.data_dir, *edge.data_dir.rglob("*")]
    assert {p.name for p in entries} >= {"edge.sqlite3", "jwt-secret", "ca.key", "ca.crt",
                                         "ssh_host_ed25519_key", "dataplane.sock"}
    loose = {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in entries
             if stat.S_IMODE(p.lstat().st_mode) & 0o077}
    assert loose == {}
    assert stat.S_IMODE(edge.data_dir.stat().st_mode) == 0o700
    assert "made private" in edge.log_tail(200)          # the old dir was tightened, and said so


def test_an_invite_token_makes_one_account_only(edge, tmp_path):
    key = ssh_keygen(tmp_path / "k")
    assert register(edge, "one@example.com", "first-token", key).status == 200
    again = register(edge, "two@example.com", "first-token", key)
    assert again.status == 403 and "invite_token" in again.body["error_message"]
    assert register(edge, "two@example.com", "second-token", key).status == 200
    edge.restart()                                       # spent tokens stay spent
    again = register(edge, "three@example.com", "second-token", key)
    assert again.status == 403 and "invite_token" in again.body["error_message"]
    assert register(edge, "three@example.com", "not-a-token", key).status == 403


def test_one_account_cannot_take_every_public_tcp_port(edge, tmp_path):
    hog, other = invited_account(edge, tmp_path, "acct-1"), invited_account(edge, tmp_path, "acct-2")
    for _ in range(TCP_PORTS_PER_ACCOUNT):
        assert new_socket(edge, hog, socket_type="tcp")["socket_tcp_ports"][0] > 0
    refused = edge.api("POST", "/connect", {"name": "one too many", "socket_type": "tcp"},
                       token=hog.token)
    assert refused.status == 403 and "tcp port quota" in refused.body["error_message"]
    assert new_socket(edge, hog)["socket_type"] == "http"      # other types: not this quota
    assert new_socket(edge, other, socket_type="tcp")["socket_tcp_ports"][0] > 0


def invited_account(edge, tmp_path, token) -> Account:
    key_path = tmp_path / token
    pub = ssh_keygen(key_path)
    email = "{}@example.com".format(token)
    resp = register(edge, email, token, pub)
    assert resp.status == 200, resp.body
    return Account(email, "pw", key_path, pub, resp.body, edge.login(email, "pw"))


def test_the_api_answers_503_with_retry_after_until_the_data_plane_is_up(tmp_path):
    """Tried as a new user would: POST /user while the data plane is still starting
    (held back here by a wrapper that waits for a file) is a clean 503, not a 500."""
    gate = tmp_path / "go-ahead"
    slow = tmp_path / "slow-dataplane"
    slow.write_text('#!/bin/sh\nwhile [ ! -e "{}" ]; do sleep 0.05; done\nexec "{}" "$@"\n'
                    .format(gate, ensure_built(quiet=True)))
    slow.chmod(0o755)
    api_port = free_port()
    stdout = tmp_path / "edge.stdout"
    with open(stdout, "wb") as out, open(tmp_path / "edge.log", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "--api-port", str(api_port), "--ssh-port", "0",
             "--http-port", "0", "--https-port", "0", "--tcp-ports", "0",
             "--data-dir", str(tmp_path / "data")], cwd=str(REPO_ROOT),
            env=dict(os.environ, EDGE_DATAPLANE_BIN=str(slow)), stdin=subprocess.DEVNULL,
            stdout=out, stderr=err)
    try:
        user = {"name": "n", "email": "early@example.com", "password": "pw",
                "sshkey": ssh_keygen(tmp_path / "k")}
        status, headers, body = api_call(api_port, "POST", "/user", user, wait_listening=True)
        assert status == 503 and headers["retry-after"] == "1", (status, body)
        assert "starting" in body["error_message"]
        assert api_call(api_port, "GET", "/connect")[0] == 503
        assert b"EDGE READY" not in stdout.read_bytes()
        gate.touch()
        deadline = time.monotonic() + 30
        while b"EDGE READY" not in stdout.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, "the edge did not start"
            time.sleep(0.05)
        status, _, body = api_call(api_port, "POST", "/user", user)
        assert status == 200, body                      # the early attempt changed nothing
        log = (tmp_path / "edge.log").read_text()
        assert "Traceback" not in log and "internal error" not in log
    finally:
        gate.touch()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_call(port, method, path, body=None, wait_listening=False):
    """(status, lower-cased headers, parsed JSON) of one call; optionally waits (bounded)
    until the API port accepts connections."""
    deadline = time.monotonic() + (20 if wait_listening else 0)
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                    json.loads(resp.read() or b"null"))
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()
