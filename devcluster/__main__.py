"""`python -m devcluster` (what `make cluster` runs): a control plane in the foreground.

Prints one line, `KUBECONFIG=<path>`, on stdout once the apiserver is ready,
then runs until Ctrl-C or SIGTERM and stops everything (exit 0). Exits 1 if
etcd or the apiserver dies on its own. Logs go to stderr. The signal handlers
only set a flag; a signal that arrives during start-up is acted on as soon as
start-up ends (bounded by --ready-timeout).
"""

import argparse
import logging
import signal
import sys
import threading

from .controlplane import ControlPlane

log = logging.getLogger("devcluster")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ready-timeout", type=float, default=60.0,
                        help="seconds to wait for /readyz (default 60)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.set())

    with ControlPlane(ready_timeout=args.ready_timeout) as cp:
        print(f"KUBECONFIG={cp.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            if not cp.running():
                log.error("a control-plane process exited on its own (%s):\n%s",
                          cp.pids(), cp.log_tails())
                return 1
        log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
