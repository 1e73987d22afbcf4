"""`python -m devcluster.measure_startup [N]`: time N control-plane start-ups.

Start-up is what every test session and demo pays first, so it is worth a
number: from ControlPlane.start() to /readyz ok, with binaries already cached.
Prints each run and the median. Runs on whatever loopback it is given (host,
or a private namespace under `unshare --net`).
"""

import statistics
import sys
import time

from .controlplane import ControlPlane


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    runs = int(argv[0]) if argv else 5
    times = []
    for i in range(runs):
        started = time.monotonic()
        with ControlPlane():
            times.append(time.monotonic() - started)
        print(f"run {i + 1}: {times[-1]:.2f}s", flush=True)
    print(f"median of {runs}: {statistics.median(times):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
