"""The Gateway API conformance suite, GATEWAY-HTTP and GATEWAY-GRPC profiles, against mysocketd and the edge on a
real node.

The official suite (devcluster/conformance.py), unmodified, with the features mysocketd claims: every core
test must pass with none skipped, and every claimed extended feature's tests too. The report it writes is
kept where MYSOCKETD_CONFORMANCE_REPORT says (`keep`: conformance/report-<version>.yaml in the repository,
which `make conformance` writes).
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from devcluster import conformance

pytestmark = pytest.mark.timeout(2400)


def test_gateway_http_and_grpc_profiles(conformance_cluster, mysocketd, tmp_path):
    report = tmp_path / "report.yaml"
    run = conformance.SuiteRun(kubeconfig=conformance_cluster.cp.kubeconfig, report=report,
                               run_test=os.environ.get("CONFORMANCE_RUN_TEST", ""),
                               timeout_minutes=30)
    started = time.monotonic()
    try:
        result = conformance.run(run, tmp_path / "suite.log")
    finally:
        logs = conformance_cluster.cp.kubectl("logs", "-n", "mysocket", "-l", "app.kubernetes.io/name=mysocketd",
                                              "--tail=-1", "--prefix", check=False)
        (tmp_path / "mysocketd.log").write_text(logs.stdout + logs.stderr)
        print(f"logs in {tmp_path}")
    took = time.monotonic() - started
    print(f"conformance suite: {took:.0f}s; " + "; ".join(result.report.summary()))
    keep = os.environ.get("MYSOCKETD_CONFORMANCE_REPORT")
    if keep:                        # "keep": where the repository keeps it (make conformance)
        shutil.copy(report, conformance.REPORT if keep == "keep" else Path(keep))
    for profile in conformance.PROFILES:
        assert result.report.profile(profile) is not None, (tmp_path / "suite.log").read_text()[-4000:]
    assert not result.report.problems(), "\n".join(result.report.problems())
    assert result.returncode == 0, (tmp_path / "suite.log").read_text()[-4000:]
