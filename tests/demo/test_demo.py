"""`make demo`'s code path, run as CI runs it: the blog's table, the public name, nothing left behind.

devcluster.demo.run() starts its own control plane, edge, controller and
stand-in pods (its controller watches every namespace, so it must not share
the session control plane with other tests); these tests only read what it
printed and returned, and check that its teardown left no process behind.
"""

import io

import psutil
import pytest

from devcluster import demo

pytestmark = pytest.mark.timeout(300)


def leftovers(markers):
    """Live processes whose command line mentions one of `markers` (work dir, pod names)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmdline for m in markers):
            found.append((proc.pid, cmdline))
    return found


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One full run of the demo for this module: (result, printed text, work dir)."""
    workdir = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    result = demo.run(out=out, workdir=workdir)
    return result, out.getvalue(), workdir


def test_the_demo_spreads_sixty_requests_over_three_pods(demo_run):
    result, text, _ = demo_run
    assert len(result["pods"]) == 3
    assert set(result["counts"]) == set(result["pods"]), text
    assert sum(result["counts"].values()) == demo.REQUESTS
    assert min(result["counts"].values()) >= 10, result["counts"]
    for pod, n in result["counts"].items():
        assert f"{n:7d} Server: {pod}\n" in text            # the `sort | uniq -c` table as printed
    assert "stand-in processes play the Deployment's 3 pods" in text


def test_kubectl_get_svc_shows_the_public_name(demo_run):
    result, text, _ = demo_run
    dnsname = result["dnsname"]
    assert dnsname.endswith(".edge.localhost")
    printed_svc = text.split(f"==> [9/{demo.STEPS}]")[1].split("==> tearing down")[0]
    assert "PUBLIC-NAME" in printed_svc and dnsname in printed_svc
    assert dnsname in result["svc_table"]


def test_the_demo_stops_everything_it_started(demo_run):
    result, text, workdir = demo_run
    assert "mysocketd exited with code 0 after SIGTERM" in text
    assert leftovers([str(workdir), *result["pods"]]) == []


def test_the_demo_never_shows_the_account_password(demo_run):
    _, text, workdir = demo_run
    password = (workdir / "account" / "password").read_text()
    assert len(password) > 10
    assert password not in text
    assert password not in (workdir / "mysocketd" / "mysocketd.log").read_text()


def test_a_failing_step_is_named_and_everything_is_torn_down(tmp_path, monkeypatch):
    def broken_pods(self):
        raise RuntimeError("injected: no pods today")

    steps = list(demo.Demo.STEP_LIST)
    title, _, logs = steps[5]
    steps[5] = (title, broken_pods, logs)
    monkeypatch.setattr(demo.Demo, "STEP_LIST", tuple(steps))
    out = io.StringIO()

    with pytest.raises(demo.DemoFailed, match=r"step \[6/9\].*injected: no pods today"):
        demo.run(out=out, workdir=tmp_path / "demo")
    text = out.getvalue()
    assert "==> FAILED: step [6/9]" in text
    assert "==> [7/9]" not in text
    assert "==> tearing down" in text and "mysocketd exited with code 0 after SIGTERM" in text
    assert leftovers([str(tmp_path)]) == []
