"""Build and find the edge's Go data plane (edge/dataplane/) -- ``python -m edge.binary``.

Why it is shaped this way:
- The binary is named by a hash of its sources: go.mod, go.sum and every .go
  file under edge/dataplane/ (the internal/ packages too), each hashed with its
  path relative to edge/dataplane/, so moving a file between packages is a
  change. A second build does nothing, a changed source builds a new binary,
  and several work trees can share one cache directory without overwriting
  each other's binaries. The cache is ``.cache/edge/`` (override: EDGE_CACHE_DIR).
- Builds hold a lock file, so parallel test processes that find no binary
  build it once. ``python -m edge`` builds on demand when Go is installed;
  when it is not, it says so in one line instead of a traceback.
- Only the Go module proxy is needed; nothing is vendored. ``python -m edge.binary``
  (``make dataplane``) also downloads every module go.mod names, so the Go tests
  (tests/edge/test_dataplane_go.py) run inside make test's namespace, offline.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "dataplane"
REPO_ROOT = SOURCE_DIR.parent.parent


class NoBinary(Exception):
    """The data plane binary is missing and cannot be built here."""


def source_files() -> list:
    """go.mod, go.sum and every .go file of every package (tests too: one rule, no guessing)."""
    return sorted(path for path in SOURCE_DIR.rglob("*") if path.is_file()
                  and (path.suffix == ".go" or path.relative_to(SOURCE_DIR).as_posix() in ("go.mod", "go.sum")))


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in source_files():
        name = path.relative_to(SOURCE_DIR).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def go_version() -> str:
    """The Go version go.mod asks for (its `go` line), e.g. 1.26.8."""
    for line in (SOURCE_DIR / "go.mod").read_text().splitlines():
        if line.startswith("go "):
            return line.split()[1]
    return "?"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_CACHE_DIR") or REPO_ROOT / ".cache" / "edge")


def binary_path() -> Path:
    return cache_dir() / "dataplane-{}".format(source_hash())


def go_command() -> str:
    """The `go` to build and test the data plane with; NoBinary when there is none."""
    return _go()


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK)
                                else None)
    if go is None:
        raise NoBinary("the edge's data plane is written in Go and no `go` (>= {}) is on PATH: "
                       "install Go, or set EDGE_DATAPLANE_BIN to a built binary".format(go_version()))
    return go


def ensure_built(quiet: bool = False) -> Path:
    """The binary for the current sources, built first if it is missing."""
    override = os.environ.get("EDGE_DATAPLANE_BIN")
    if override:
        return Path(override)
    target = binary_path()
    if target.exists():
        return target
    go = _go()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        if not quiet:
            print("building the edge data plane -> {}".format(target), file=sys.stderr, flush=True)
        tmp = target.with_name(target.name + ".tmp")
        result = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=str(SOURCE_DIR),
                                capture_output=True, text=True, timeout=900,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise NoBinary("go build of edge/dataplane failed:\n" + result.stderr[-4000:])
        os.replace(tmp, target)
    return target


def download_modules() -> None:
    """Fetch every module go.mod names (its tests' too) into the module cache, so that
    `go test` runs where the network is not reachable (make test's namespace)."""
    if os.environ.get("EDGE_DATAPLANE_BIN"):
        return
    result = subprocess.run([_go(), "mod", "download"], cwd=str(SOURCE_DIR), capture_output=True,
                            text=True, timeout=900, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise NoBinary("go mod download in edge/dataplane failed:\n" + result.stderr[-4000:])


def main() -> int:
    try:
        print(ensure_built())
        download_modules()
    except NoBinary as exc:
        print("edge data plane: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
