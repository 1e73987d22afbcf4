"""The controller killed in the middle of creating sockets, then started again."""

import time

import psutil
from chaos_world import record


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
