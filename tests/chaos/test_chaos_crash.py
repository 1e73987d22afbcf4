"""The controller killed in the middle of creating sockets, then started again."""

import time

import psutil
from chaos_world import record

from devcluster.apiproxy import ApiProxy, creating
from devcluster.controller import Account, ControllerProcess
from devcluster.stack import Cluster, account_sockets, exposed, wait_for


def test_sigkill_while_creating_sockets_then_restart(world):
    times, orphans_left = [], 0
    for run in range(3):
        names = [f"r{run}-{i}" for i in range(8)]
        world.expose(names, wait=False)
        time.sleep(0.6 + 0.3 * run)                  # somewhere in the middle of the burst
        orphans = world.controller.ssh_children()
        world.controller.kill()
        started = time.monotonic()
        world.controller.start()                     # same state dir: the same "pod", restarted
        orphans_left += sum(1 for p in orphans if psutil.pid_exists(p.pid)
                            and p.status() != psutil.STATUS_ZOMBIE)
        world.wait_all_answer(timeout=60)
        times.append(time.monotonic() - started)
    assert orphans_left == 0, "ssh children of the killed controller survived its restart"
    record("SIGKILL of the controller mid-burst, then restart", times, world.check())


def test_sigkill_while_creates_are_in_flight_then_restart(control_plane, controller_kubeconfig, edge, namespace,
                                                          standins, tmp_path):
    """The kill lands for sure while three creates are on their way: the server makes those sockets, nobody
    records them, and the restarted controller must find them by name instead of making them again."""
    account = Account.register(edge, tmp_path / "account")
    cluster = Cluster(control_plane, namespace)
    names = [f"r{i}" for i in range(8)]
    in_flight = {"/r5", "/r6", "/r7"}
    hold = lambda method, path, body: any(creating(n)(method, path, body) for n in in_flight)  # noqa: E731
    with ApiProxy(edge.api_url, hold=hold, finish_abandoned=True) as proxy:
        def controller():
            return ControllerProcess(tmp_path / "pod", kubeconfig=controller_kubeconfig, edge=edge, account=account,
                                     namespace=namespace, cluster_name="crash", log_level="INFO",
                                     extra_args=["--api-url", proxy.url]).start()

        first = controller()
        try:
            for name in names:
                cluster.service(name, annotations={"mysocket.io/enabled": "true"})
                standins.for_service(namespace, name)
            wait_for("five created and three on their way",
                     lambda: len(account_sockets(edge, account)) == 5 and len(proxy.held) == 3, timeout=60)
            orphans = first.ssh_children()
            first.kill()
            started = time.monotonic()
            proxy.release.set()                          # the creates reach the edge; their answers reach nobody
            wait_for("the eight sockets made", lambda: len(account_sockets(edge, account)) == 8, timeout=30)
            proxy.hold = lambda *a: False
            second = controller()
            for name in names:
                exposed(cluster, edge, name)
            took = time.monotonic() - started
            assert sorted(s["name"].rsplit("/", 1)[1] for s in account_sockets(edge, account)) == names
            assert not any(psutil.pid_exists(p.pid) and p.status() != psutil.STATUS_ZOMBIE for p in orphans)
            assert len(second.ssh_children()) == 1             # one session holds the eight forwards
            wait_for("the eight forwards up", lambda: "mysocketd_tunnels_up 8.0" in second.metrics())
        finally:
            for c in (first, locals().get("second")):
                if c is not None:
                    c.stop()
                    c.reap_orphans()
    record("SIGKILL of the controller with 3 creates in flight, then restart", [took],
           {"lost": 0, "duplicated": 0, "leaked": 0})
