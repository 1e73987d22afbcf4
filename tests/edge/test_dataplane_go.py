"""The Go data plane's own tests, as part of `make test` (and so of CI).

`go test -race ./...` runs every package's tests under the race detector, and
every fuzz target (`func FuzzX(f *testing.F)` in any package) runs for a few
seconds; both are found by go itself, so tests another package adds run here
without any change to this file. A failure shows go's own output.
"""

import re
import subprocess

import pytest

from edge.binary import SOURCE_DIR, go_command

FUZZ_SECONDS = 3     # a smoke run per target in make test; fuzz longer by hand (go test -fuzz)


def go(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([go_command(), *args], cwd=str(SOURCE_DIR), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout[-12000:] + "\n" + result.stderr[-4000:]).strip()


@pytest.mark.timeout(1200)
def test_go_tests_pass_under_the_race_detector():
    result = go("test", "-race", "-count=1", "./...")
    assert result.returncode == 0, "go test -race ./... failed:\n" + output(result)


def fuzz_targets() -> list:
    """[(package import path, FuzzName)] of every fuzz target, as `go test -list` says."""
    result = go("test", "-list", "^Fuzz", "./...")
    assert result.returncode == 0, output(result)
    targets, names = [], []
    for line in result.stdout.splitlines():
        if re.fullmatch(r"Fuzz\w+", line.strip()):
            names.append(line.strip())
        elif line.startswith("ok "):                  # "ok  \t<package>\t0.01s": its names end
            package = line.split()[1]
            targets += [(package, name) for name in names]
            names = []
    return targets


@pytest.mark.timeout(1200)
def test_every_fuzz_target_runs_clean_for_a_few_seconds():
    targets = fuzz_targets()
    assert targets, "no fuzz target found: the HTTP front and the SNI peek have them"
    failures = []
    for package, name in targets:
        result = go("test", "-run", "^$", "-fuzz", "^{}$".format(name),
                    "-fuzztime", "{}s".format(FUZZ_SECONDS), package)
        if result.returncode != 0:
            failures.append("{} {}:\n{}".format(package, name, output(result)))
    assert not failures, "\n\n".join(failures)
