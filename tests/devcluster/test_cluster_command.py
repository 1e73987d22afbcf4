"""`python -m devcluster` (make cluster): prints KUBECONFIG once ready, exits 0 on SIGTERM."""

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from devcluster import assert_private_netns
from devcluster.binaries import REPO_ROOT, binary
from devcluster.processes import find_processes


def test_foreground_mode_prints_kubeconfig_and_stops_cleanly(tmp_path):
    assert_private_netns()
    with open(tmp_path / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "devcluster"], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    kubeconfig = None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        line = proc.stdout.readline().decode().strip() if ready else ""
        assert line.startswith("KUBECONFIG="), (tmp_path / "stderr.log").read_text()
        kubeconfig = Path(line.partition("=")[2])
        readyz = subprocess.run([binary("kubectl"), f"--kubeconfig={kubeconfig}",
                                 "get", "--raw", "/readyz"],
                                capture_output=True, text=True, timeout=30)
        assert readyz.stdout.strip() == "ok", readyz.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert find_processes(("etcd", "kube-apiserver"), str(kubeconfig.parent)) == []
        assert not kubeconfig.exists()
    finally:
        if proc.poll() is None:
            proc.terminate()   # lets it stop its own children
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if kubeconfig is not None:
            for leftover in find_processes(("etcd", "kube-apiserver"), str(kubeconfig.parent)):
                leftover.kill()
        proc.stdout.close()
