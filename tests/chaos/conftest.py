"""Fixtures of the chaos suite: a World per module, and the scoreboard printed at the end."""

import json
import uuid
from pathlib import Path

import pytest
from chaos_world import RESULTS, World

from devcluster import assert_private_netns
from devcluster.controller import Account, ControllerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def replicas():
    """How many controller replicas the module's world runs (2 means leader election)."""
    return 1


@pytest.fixture(scope="module")
def world(control_plane, controller_kubeconfig, edge, tmp_path_factory, replicas):
    """A module's own namespace, account and controller(s), with --probe-url on."""
    from devcluster.standin import StandIns
    assert_private_netns()
    workdir = tmp_path_factory.mktemp("chaos")
    ns = "chaos-" + uuid.uuid4().hex[:6]
    control_plane.kubectl("create", "namespace", ns)
    account = Account.register(edge, workdir / "account")
    args = ["--probe-url", f"http://{edge.host}:{edge.http_port}/", "--resync-seconds", "10"]
    if replicas > 1:
        args += ["--leader-election", "--lease-name", ns]
    controllers = [ControllerProcess(workdir / f"controller{i}", kubeconfig=controller_kubeconfig, edge=edge,
                                     account=account,
                                     namespace=ns, cluster_name="chaos", log_level="INFO", extra_args=args)
                   for i in range(replicas)]
    with StandIns(control_plane, workdir) as standins:
        try:
            for c in controllers:
                c.start()
            yield World(control_plane, edge, account, controllers, ns, standins)
        finally:
            for c in controllers:
                c.stop()
                c.reap_orphans()
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    out = ROOT / ".cache" / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(RESULTS, indent=2) + "\n")
    tr = terminalreporter
    tr.section("chaos: recovery after each fault")
    width = max(len(r["fault"]) for r in RESULTS)
    tr.write_line(f"{'fault':{width}} {'runs':>4} {'median':>8} {'worst':>8} {'lost':>5} {'dup':>4} {'leak':>5} "
                  f"{'requests':>8} {'failed':>6}")
    for r in RESULTS:
        tr.write_line(f"{r['fault']:{width}} {r['runs']:>4} {r['median_s']:>7.2f}s {r['worst_s']:>7.2f}s "
                      f"{r['lost']:>5} {r['duplicated']:>4} {r['leaked']:>5} "
                      f"{r.get('requests', '-'):>8} {r.get('failed', '-'):>6}")
    tr.write_line(f"(also in {out / 'latest.json'}; reproduce with `make chaos`)")
