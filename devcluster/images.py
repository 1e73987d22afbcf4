"""The images the local node runs, built here from Debian packages (no registry is reachable).

    python -m devcluster.images          (what `make images` runs; `make build` too)

Why it is shaped this way:
- The base is made, not pulled: `debootstrap --variant=minbase bookworm` from
  the Debian mirror, slimmed the way the official debian:bookworm-slim is (no
  docs, man pages, locales or apt lists), imported into podman as
  localhost/debian:bookworm-slim. Everything above it comes from Debian
  packages and the pinned requirements, so CI rebuilds it honestly.
- mysocketd is built from the project's Dockerfile as it is; podman's `--from`
  points its `FROM debian:bookworm-slim` at that base. The demo app and the
  pod sandbox ("pause") image are two small Containerfiles in containerfiles/.
- podman runs with runc (crun fails on this kernel's hybrid cgroups), rlimits
  within the machine's hard limits, the host network for apt and pip (a
  build is a client, it listens nowhere) and the host's CA bundle mounted for
  pip behind an intercepting proxy (at /dev/host-ca-certificates.crt, named
  by the Dockerfile's `ARG PIP_CERT`: mounted over Debian's own bundle it
  would break ca-certificates' postinst). Its storage (and network config) lives
  in .cache/podman, so the layer cache survives and no image lands in
  /var/lib/containers or config in /etc/cni; only containers/image's blob-info
  cache (a 128 KB bolt file) is written to /var/lib/containers/cache by
  `podman save`, a fixed path for root that no flag moves.
- The three images are saved into one docker-archive (the base layer once),
  .cache/images/node-images-<key>.tar with a .json naming the references;
  <key> hashes every input (base recipe, Containerfiles, the Dockerfile's
  context), so a second build does nothing and a change to lib/ makes a new
  archive. The node imports the archive into its containerd at start.
- The Gateway API conformance suite's images (tests/conformance) are a second,
  separate archive, .cache/images/conformance-images-<key>.tar: its echo-basic
  backend under both names its base manifests use, and CoreDNS, each the
  static binary devcluster/build.sh built from the pinned module on scratch
  (containerfiles/conformance/). Only the conformance node imports it, so the
  other nodes' start does not grow, and the node images' key does not move.
- One lock serialises builds from every worktree sharing .cache.
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import REPO_ROOT, BinaryMissing, coredns_binary, gateway_api_file

CACHE = Path(os.environ.get("IMAGES_CACHE") or REPO_ROOT / ".cache" / "images")
# Resolved: worktrees share .cache through a symlink, and podman records the path it was first given.
PODMAN_STATE = (REPO_ROOT / ".cache" / "podman").resolve()
CONTAINERFILES = Path(__file__).with_name("containerfiles")
CONFORMANCE_CONTAINERFILES = CONTAINERFILES / "conformance"
# The names the conformance suite's base/manifests.yaml gives its images (nothing can be pulled here).
ECHO_BASIC_REFS = ("registry.k8s.io/gateway-api/echo-basic:v1.5.1",
                   "registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3")
COREDNS_REF = "registry.k8s.io/coredns/coredns:v1.12.2"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BASE_REF = f"localhost/debian:{SUITE}-slim"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA_BUNDLE = "/dev/host-ca-certificates.crt"   # /dev is a tmpfs in a RUN: no trace in a layer
ARCHIVES_KEPT = 8     # worktrees building at once each keep theirs (~350 MB an archive)

# What debian:bookworm-slim does to a minbase system (debuerreotype's slimify):
# dpkg never installs these paths, and they are removed from what is there.
SLIM_DPKG_CFG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
APT_CLEAN_CFG = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""
# Removed from the debootstrap root: what slim leaves out, the download cache, logs, and the
# device nodes debootstrap makes (a container gets its /dev from the runtime).
SLIM_REMOVE = ("usr/share/doc/*/*", "usr/share/man/*", "usr/share/groff/*", "usr/share/info/*",
               "usr/share/lintian/*", "usr/share/linda/*", "usr/share/locale/*",
               "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
               "var/log/*", "tmp/*", "dev/*")
SOURCES = f"""\
Types: deb
URIs: {DEBIAN_MIRROR}
Suites: {SUITE} {SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {DEBIAN_MIRROR}-security
Suites: {SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


class ImageBuildError(RuntimeError):
    """A prerequisite is missing or a build step failed (the message says which)."""


@dataclass(frozen=True)
class NodeImages:
    """The archive the node imports and the references inside it."""

    archive: Path
    mysocketd: str
    demo_app: str
    pause: str

    @classmethod
    def load(cls, key=None) -> "NodeImages":
        """The images for the current sources; ImageBuildError if not built yet."""
        archive, refs = _built("node-images", key or images_key())
        return cls(archive=archive, **refs)


@dataclass(frozen=True)
class ConformanceImages:
    """The archive of the conformance suite's images and the references inside it."""

    archive: Path
    refs: tuple

    @classmethod
    def load(cls, key=None) -> "ConformanceImages":
        archive, refs = _built("conformance-images", key or conformance_key())
        return cls(archive=archive, refs=tuple(refs))


def _built(name, key):
    """(the archive, the references in it) of the images `make build` made as `name` for `key`."""
    manifest = CACHE / f"{name}-{key}.json"
    if not manifest.exists():
        raise ImageBuildError(f"{manifest} is missing: run `make build` (python -m devcluster.images) first")
    return CACHE / f"{name}-{key}.tar", json.loads(manifest.read_text())


# --- keys -------------------------------------------------------------------

def dockerfile_context_files() -> list[Path]:
    """The files `podman build .` sends for the Dockerfile, from .dockerignore's allowlist.

    .dockerignore starts with `*` and re-includes paths with `!`; the other
    lines exclude (e.g. lib/__pycache__). Compiled files never count."""
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines or lines[0] != "*":
        raise ImageBuildError(".dockerignore must start with `*` and list what the image needs with `!path`")
    included = [line[1:].rstrip("/") for line in lines[1:] if line.startswith("!")]
    excluded = {line.rstrip("/") for line in lines[1:] if not line.startswith("!")}
    files = []
    for entry in included:
        path = REPO_ROOT / entry
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in candidates:
            rel = p.relative_to(REPO_ROOT)
            if p.suffix == ".pyc" or any(str(rel).startswith(e) for e in excluded):
                continue
            files.append(p)
    return sorted(set(files))


def _digest(parts) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def base_key() -> str:
    return _digest([("suite", SUITE.encode()), ("mirror", DEBIAN_MIRROR.encode()),
                    ("dpkg", SLIM_DPKG_CFG.encode()), ("apt", APT_CLEAN_CFG.encode()),
                    ("remove", "\n".join(SLIM_REMOVE).encode()),
                    ("sources", SOURCES.encode())])[:16]


def images_key() -> str:
    """One hash of every input of the three images (this file too: it holds the build flags)."""
    files = [REPO_ROOT / "Dockerfile", REPO_ROOT / ".dockerignore", *dockerfile_context_files(),
             *sorted(CONTAINERFILES.glob("*.Containerfile")), Path(__file__)]
    parts = [("base", base_key().encode())]
    parts += [(str(f.relative_to(REPO_ROOT)), f.read_bytes()) for f in files]
    return _digest(parts)[:16]


def conformance_inputs() -> list:
    """(Containerfile, binary, references) of each conformance image."""
    try:
        return [(CONFORMANCE_CONTAINERFILES / "echo-basic.Containerfile", gateway_api_file("echo-basic"),
                 ECHO_BASIC_REFS),
                (CONFORMANCE_CONTAINERFILES / "coredns.Containerfile", coredns_binary(), (COREDNS_REF,))]
    except BinaryMissing as e:
        raise ImageBuildError(str(e)) from None


def conformance_key() -> str:
    """One hash of the conformance images' inputs: Containerfiles, binaries, names, this file."""
    parts = [("images.py", Path(__file__).read_bytes())]
    for containerfile, binary, refs in conformance_inputs():
        parts += [(containerfile.name, containerfile.read_bytes()), (binary.name, binary.read_bytes()),
                  ("refs", "\n".join(refs).encode())]
    return _digest(parts)[:16]


# --- building ---------------------------------------------------------------

class Builder:
    """The steps, with podman pointed at the project's own storage."""

    def __init__(self, log=sys.stderr):
        self.log = log
        self.state = PODMAN_STATE

    def say(self, text):
        print(text, file=self.log, flush=True)

    def podman(self, *args, **kwargs):
        argv = ["podman", "--root", str(self.state / "root"), "--runroot", str(self.state / "run"),
                "--tmpdir", str(self.state / "tmp"), "--network-config-dir", str(self.state / "networks"),
                "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                "--events-backend", "none", "--storage-driver", "overlay", *args]
        return _run(argv, **kwargs)

    def build(self, tag, containerfile, context, from_ref=None):
        argv = ["build", "--pull=never", "--network=host", "--ulimit", "nofile=20000:20000",
                "--ulimit", "nproc=4096:4096", "--layers", "-f", str(containerfile), "-t", tag]
        if HOST_CA_BUNDLE.exists():
            argv += ["-v", f"{HOST_CA_BUNDLE}:{BUILD_CA_BUNDLE}:ro", "--build-arg", f"PIP_CERT={BUILD_CA_BUNDLE}"]
        if from_ref:
            argv += ["--from", from_ref]
        self.podman(*argv, str(context), timeout=1800)

    def has_image(self, ref):
        return self.podman("image", "exists", ref, check=False).returncode == 0

    def base(self):
        """localhost/debian:bookworm-slim from debootstrap, unless this recipe's is there."""
        key = base_key()
        label = self.podman("image", "inspect", "--format", "{{index .Labels \"devcluster.base-key\"}}",
                            BASE_REF, check=False)
        if label.returncode == 0 and label.stdout.strip() == key:
            return
        self.say(f"making {BASE_REF} with debootstrap from {DEBIAN_MIRROR} (cold: 1-2 minutes)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), DEBIAN_MIRROR], timeout=1800)
            _slim(rootfs)
            tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."],
                                   stdout=subprocess.PIPE)
            try:
                self.podman("import", "--change", 'CMD ["bash"]', "--change", f"LABEL devcluster.base-key={key}",
                            "-", BASE_REF, stdin=tar.stdout, timeout=600)
            finally:
                tar.stdout.close()
                if tar.wait(60) != 0:
                    raise ImageBuildError("tar of the debootstrap root failed")
        self.say(f"  {BASE_REF}: {time.monotonic() - started:.0f}s")

    def all(self):
        key = images_key()
        archive, manifest = CACHE / f"node-images-{key}.tar", CACHE / f"node-images-{key}.json"
        if manifest.exists() and archive.exists():
            return NodeImages.load(key)
        refs = {"mysocketd": f"localhost/mysocketd:dev-{key[:10]}",
                "demo_app": f"localhost/demo-app:dev-{key[:10]}",
                "pause": f"localhost/pause:dev-{key[:10]}"}
        self.base()
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="ctx-") as empty:
            for _name, ref, containerfile, context, from_ref in (
                    ("mysocketd", refs["mysocketd"], REPO_ROOT / "Dockerfile", REPO_ROOT, BASE_REF),
                    ("demo app", refs["demo_app"], CONTAINERFILES / "demo-app.Containerfile", empty, None),
                    ("pause", refs["pause"], CONTAINERFILES / "pause.Containerfile", empty, None)):
                started = time.monotonic()
                self.build(ref, containerfile, context, from_ref)
                self.say(f"  {ref}: {time.monotonic() - started:.0f}s")
        partial = archive.with_suffix(".tar.partial")
        partial.unlink(missing_ok=True)
        self.podman("save", "--format", "docker-archive", "--multi-image-archive", "-o", str(partial),
                    *refs.values(), timeout=600)
        partial.rename(archive)
        manifest.write_text(json.dumps(refs, indent=2) + "\n")
        self.say(f"node images in {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
        self._prune(keep={key})
        return NodeImages.load(key)

    def conformance(self):
        """The conformance archive: each binary on scratch, tagged with every name the suite uses."""
        key = conformance_key()
        archive, manifest = CACHE / f"conformance-images-{key}.tar", CACHE / f"conformance-images-{key}.json"
        if manifest.exists() and archive.exists():
            return ConformanceImages.load(key)
        refs = []
        for containerfile, binary, names in conformance_inputs():
            started = time.monotonic()
            with tempfile.TemporaryDirectory(dir=CACHE, prefix="ctx-") as context:
                shutil.copy2(binary, Path(context) / binary.name)
                self.build(names[0], containerfile, context)
            for name in names[1:]:
                self.podman("tag", names[0], name)
            refs += names
            self.say(f"  {', '.join(names)}: {time.monotonic() - started:.0f}s")
        partial = archive.with_suffix(".tar.partial")
        partial.unlink(missing_ok=True)
        self.podman("save", "--format", "docker-archive", "--multi-image-archive", "-o", str(partial),
                    *refs, timeout=600)
        partial.rename(archive)
        manifest.write_text(json.dumps(refs, indent=2) + "\n")
        for old in CACHE.glob("conformance-images-*.json"):
            if old != manifest:
                old.unlink(missing_ok=True)
                old.with_suffix(".tar").unlink(missing_ok=True)
        self.say(f"conformance images in {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
        return ConformanceImages.load(key)

    def _prune(self, keep):
        """Keep the newest few archives (other worktrees may want theirs) and drop older tags."""
        manifests = sorted(CACHE.glob("node-images-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in manifests[ARCHIVES_KEPT:]:
            key = old.stem.removeprefix("node-images-")
            if key in keep:
                continue
            refs = json.loads(old.read_text()).values()
            self.podman("rmi", "--ignore", *refs, check=False)
            old.unlink(missing_ok=True)
            old.with_suffix(".tar").unlink(missing_ok=True)


def _slim(rootfs: Path) -> None:
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG_CFG)
    (rootfs / "etc/apt/apt.conf.d/slim").write_text(APT_CLEAN_CFG)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
    for pattern in SLIM_REMOVE:
        for path in rootfs.glob(pattern):
            if path.name in ("copyright", "locale.alias") or path.name == "partial":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _run(argv, check=True, timeout=600, stdin=None):
    """Run a build step; its output is kept and shown only when it fails."""
    result = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv[:1] + argv[-3:])} failed (exit {result.returncode}):\n"
                              f"{(result.stdout + result.stderr)[-4000:]}")
    return result


def _pushable(image: str) -> bool:
    """registry/name:tag, where the registry has a dot or a port (or is localhost), as podman needs it."""
    name, _, tag = image.rpartition(":")
    registry = name.split("/", 1)[0]
    return bool(tag) and "/" not in tag and "/" in name and ("." in registry or ":" in registry
                                                              or registry == "localhost")


def _push(image: str) -> int:
    """The controller's image, as built for the node, tagged `image` and pushed to its registry."""
    builder = Builder()
    builder.podman("tag", NodeImages.load().mysocketd, image)
    result = builder.podman("push", image, check=False, timeout=1800)
    if result.returncode != 0:
        print(f"devcluster.images: podman push {image} failed (is `podman login <registry>` done?):\n"
              f"{(result.stdout + result.stderr)[-2000:]}", file=sys.stderr)
        return 1
    print(f"pushed {image}: install with --set image.repository={image.rpartition(':')[0]} "
          f"--set image.tag={image.rpartition(':')[2]}", file=sys.stderr)
    return 0


def check_prerequisites() -> None:
    missing = [tool for tool in ("podman", "runc", "debootstrap", "tar") if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(f"{', '.join(missing)} missing: apt-get install podman runc debootstrap "
                              "(see .ci/run), then run again")
    if os.geteuid() != 0:
        raise ImageBuildError("building the node images needs root (debootstrap, podman's storage)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the archive and references, build nothing")
    parser.add_argument("--push", metavar="IMAGE", help="then tag the controller's image IMAGE (e.g. "
                        "registry.example.com/team/mysocketd:0.1.0) and push it there (`podman login` first)")
    args = parser.parse_args(argv)
    try:
        if args.print:
            print(json.dumps({"node": NodeImages.load().__dict__, "conformance": ConformanceImages.load().__dict__},
                             default=str, indent=2))
            return 0
        if args.push is not None and not _pushable(args.push):
            raise ImageBuildError(f"--push {args.push!r}: name the image with its registry and a tag, e.g. "
                                  "IMAGE=registry.example.com/team/mysocketd:0.1.0")
        key, ckey = images_key(), conformance_key()
        if all((CACHE / name).exists() for name in (f"node-images-{key}.json", f"node-images-{key}.tar",
                                                      f"conformance-images-{ckey}.json",
                                                      f"conformance-images-{ckey}.tar")):
            return _push(args.push) if args.push else 0
        check_prerequisites()
        CACHE.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(CACHE / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            builder = Builder()
            images = builder.all()
            conformance = builder.conformance()
        print(f"node images ready: {images.archive.name}, {conformance.archive.name} "
              f"({time.monotonic() - started:.0f}s)", file=sys.stderr)
        if args.push:
            return _push(args.push)
    except ImageBuildError as e:
        print(f"devcluster.images: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
