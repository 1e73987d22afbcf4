"""The control plane's doors (issue 19): the API before the data plane is up."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from edge.binary import ensure_built
from edge.testing import REPO_ROOT, ssh_keygen

pytestmark = pytest.mark.timeout(90)

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
