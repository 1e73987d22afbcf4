"""A newcomer's mistakes, said once and clearly (as the issue that found them tried it)."""

import time
import uuid

from devcluster.stack import wait_for


def test_a_missing_namespace_is_named_with_its_flag_once(make_controller, control_plane):
    """Run as the admin, against a cluster without mysocketd's namespace: one line naming the namespace and
    the flag, not `cannot take the lead yet (Kubernetes API: HTTP 404 Not Found)` every second."""
    missing = "nowhere-" + uuid.uuid4().hex[:6]
    c = make_controller(kubeconfig=control_plane.kubeconfig, extra_args=["--lease-namespace", missing])
    said = f"the namespace '{missing}' does not exist"
    wait_for("the missing namespace named", lambda: said in c.log_path.read_text(), timeout=20)
    time.sleep(5)                                   # five more turns of the lead, the replica's Lease
    lines = [line for line in c.log_path.read_text().splitlines() if said in line]
    assert lines and all("--lease-namespace" in line for line in lines), lines
    assert len(lines) <= 2, lines                   # taking the lead, the replica's Lease: once each
    assert "404 Not Found" not in c.log_path.read_text()
