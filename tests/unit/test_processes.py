"""lib.processes.stopped: a SIGSTOPped ssh is hung as far as the edge can tell; read from /proc."""

import signal
import subprocess

from lib import processes


def test_stopped_says_so_for_a_stopped_process_only():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not processes.stopped(proc.pid)
        proc.send_signal(signal.SIGSTOP)
        deadline = 50
        while not processes.stopped(proc.pid) and deadline:
            deadline -= 1
            subprocess.run(["sleep", "0.02"], check=True)
        assert processes.stopped(proc.pid)
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(5)
        assert not processes.stopped(proc.pid)          # gone (reaped): not "stopped"
    finally:
        proc.kill()
        proc.wait(5)
