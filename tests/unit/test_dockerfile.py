"""What can be checked of the image without running it (tests/node runs it under a kubelet)."""

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Import name -> distribution name, for the third-party modules the controller may import.
DISTRIBUTIONS = {"kubernetes": "kubernetes", "requests": "requests", "psutil": "psutil",
                 "pythonjsonlogger": "python-json-logger", "prometheus_client": "prometheus-client",
                 "urllib3": "kubernetes"}


def instructions(name):
    """The arguments of every `name` instruction, continuation lines joined."""
    logical = re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
    return [line.split(None, 1)[1] for line in logical if line.startswith(name + " ")]


def test_base_image_is_debian_slim_of_a_named_release():
    """Debian's own slim image of a named release, so CI can make it from Debian packages
    (devcluster/images.py does, with debootstrap) instead of pulling it."""
    [base] = instructions("FROM")
    assert re.fullmatch(r"debian:[a-z]+-slim", base), base


def test_python_is_debians_and_the_requirements_go_into_a_venv():
    [apt] = [run for run in instructions("RUN") if "apt-get install" in run]
    assert "python3 " in apt and "python3-venv" in apt
    assert any("python3 -m venv /opt/venv" in run and "/opt/venv/bin/pip install" in run
               for run in instructions("RUN"))


def test_bytecode_is_compiled_at_build_time():
    """The root filesystem is read-only in the pod: what is not compiled here is compiled at
    every start (~2,500 files, 10-14 s to a healthy /healthz under a 50m CPU limit)."""
    runs = instructions("RUN")
    assert "--no-compile" not in DOCKERFILE
    assert any("compileall" in run and "/opt/venv/lib" in run for run in runs)
    assert any("compileall" in run and "/app" in run for run in runs)
    [last_copy] = [i for i, line in enumerate(DOCKERFILE.splitlines()) if line.startswith("COPY lib/")]
    compile_app = [i for i, line in enumerate(DOCKERFILE.splitlines()) if "compileall -q /app" in line]
    assert compile_app and compile_app[0] > last_copy, "compile /app after the code is copied in"


def test_the_build_time_ca_bundle_is_an_arg_never_an_env():
    assert instructions("ARG") == ["PIP_CERT"]
    assert "PIP_CERT" not in " ".join(instructions("ENV"))


def test_everything_it_copies_exists():
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source


def test_the_image_key_covers_exactly_what_the_build_sends():
    """devcluster/images.py rebuilds when its key changes; the key hashes .dockerignore's allowlist."""
    from devcluster.images import dockerfile_context_files
    files = {str(p.relative_to(ROOT)) for p in dockerfile_context_files()}
    expected = {"mysocketd.py", "requirements.txt", "VERSION"} | {f"lib/{p.name}" for p in (ROOT / "lib").glob("*.py")}
    assert files == expected


def test_it_runs_as_a_named_non_root_user():
    [user] = instructions("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert f"--uid {user.split(':')[0]}" in DOCKERFILE        # in /etc/passwd, which ssh needs


def test_entrypoint_is_the_controller_under_an_init():
    [entry] = instructions("ENTRYPOINT")
    assert entry == '["/usr/bin/tini", "--", "/opt/venv/bin/python", "/app/mysocketd.py"]'
    assert "openssh-client" in DOCKERFILE and "tini" in DOCKERFILE


def test_it_installs_exactly_the_pinned_runtime_set():
    assert any("pip install" in run and "-r /app/requirements.txt" in run for run in instructions("RUN"))
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line)
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in pins.values()), pins
    assert set(pins) == _third_party_imports(), "requirements.txt must be exactly what mysocketd.py and lib/ import"


def _third_party_imports():
    used = set()
    for path in [ROOT / "mysocketd.py", *(ROOT / "lib").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "lib":
                    continue
                assert top in DISTRIBUTIONS, f"{path.name} imports {top}, which is not a runtime dependency"
                used.add(DISTRIBUTIONS[top])
    return used
