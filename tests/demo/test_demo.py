"""`make demo`'s code path, run as CI runs it: the blog's table over real pods, the public name, nothing left behind.

devcluster.demo.run() starts its own control plane, node, edge and pods (its
mysocketd watches every namespace, so it must not share a cluster with other
tests); these tests only read what it printed and returned, and check that its
teardown left no process and no cgroup behind.
"""

import io

import psutil
import pytest

from devcluster import cgroups, demo

pytestmark = pytest.mark.timeout(300)


def leftovers(markers):
    """Live processes whose command line mentions one of `markers` (work dir, pod names)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmdline for m in markers):
            found.append((proc.pid, cmdline))
    return found


def node_cgroups():
    """The cgroup trees of this test run's nodes that exist right now (other runs may have theirs)."""
    return cgroups.own_trees()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One full run of the demo for this module: (result, printed text, work dir)."""
    workdir = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    result = demo.run(out=out, workdir=workdir)
    return result, out.getvalue(), workdir


def test_the_demo_spreads_sixty_requests_over_three_real_pods(demo_run):
    result, text, _ = demo_run
    assert len(result["pods"]) == 3
    assert set(result["pod_phases"].values()) == {"Running"}
    assert "deployment.apps/demo-app   3/3" in result["all_table"]
    for pod in result["pods"]:
        assert f"pod/{pod}   1/1     Running" in result["all_table"]
    # Each request is a new connection that kube-proxy sends to a random pod: every pod
    # answers (the chance that one of three gets none of 60 is 3e-11), each count as printed.
    assert set(result["counts"]) == set(result["pods"]), text
    assert sum(result["counts"].values()) == demo.REQUESTS
    for pod, n in result["counts"].items():
        assert f"{n:7d} Server: {pod}\n" in text            # the `sort | uniq -c` table as printed


def test_mysocketd_runs_from_the_manifest_as_shipped_but_for_the_named_edits(demo_run):
    _, text, _ = demo_run
    step = text.split(f"==> [4/{demo.STEPS}]")[1].split(f"==> [5/{demo.STEPS}]")[0]
    edits = [line.strip() for line in step.splitlines() if line.strip().startswith("#   ")]
    assert len(edits) == 3, step
    assert "left out the placeholder Secret mysocket/mysocketd" in edits[0]
    assert "image localhost/mysocketd:dev-" in edits[1]
    assert "MYSOCKETD_API_URL=http://172.31." in edits[2]
    assert 'deployment "mysocketd" successfully rolled out' in step
    assert step.count("1/1     Running") == 2


def test_kubectl_get_svc_shows_the_public_name(demo_run):
    result, text, _ = demo_run
    dnsname = result["dnsname"]
    assert dnsname.endswith(".edge.localhost")
    printed_svc = text.split(f"==> [9/{demo.STEPS}]")[1].split("==> tearing down")[0]
    assert "PUBLIC-NAME" in printed_svc and dnsname in printed_svc
    assert dnsname in result["svc_table"]


def test_the_demo_stops_everything_it_started(demo_run):
    result, text, workdir = demo_run
    assert len(result["exit_codes"]) == 2 and set(result["exit_codes"].values()) == {0}
    for pod in result["exit_codes"]:
        assert f"mysocketd pod {pod} exited with code 0 after SIGTERM" in text
    assert leftovers([str(workdir)]) == []
    assert node_cgroups() == []


def test_the_demo_never_shows_the_account_password(demo_run):
    _, text, workdir = demo_run
    password = (workdir / "account" / "password").read_text()
    assert len(password) > 10
    assert password not in text


def test_a_failing_step_is_named_and_everything_is_torn_down(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("injected: no table today")

    steps = list(demo.Demo.STEP_LIST)
    title, _, logs = steps[5]
    steps[5] = (title, broken, logs)
    monkeypatch.setattr(demo.Demo, "STEP_LIST", tuple(steps))
    out = io.StringIO()

    with pytest.raises(demo.DemoFailed, match=r"step \[6/9\].*injected: no table today"):
        demo.run(out=out, workdir=tmp_path / "demo")
    text = out.getvalue()
    assert "==> FAILED: step [6/9]" in text
    assert "==> [7/9]" not in text
    assert "==> tearing down" in text and text.count("exited with code 0 after SIGTERM") == 2
    assert leftovers([str(tmp_path)]) == []
    assert node_cgroups() == []
    assert f"files and logs kept in {tmp_path / 'demo'}" in text
    assert (tmp_path / "demo" / "cluster" / "node" / "kubelet.log").exists()
