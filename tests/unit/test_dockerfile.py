"""What can be checked of the image without a Docker engine."""

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
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(name + " ")]


def test_base_image_is_slim_and_pinned():
    [base] = instructions("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base


def test_everything_it_copies_exists():
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source


def test_it_runs_as_a_named_non_root_user():
    [user] = instructions("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert f"--uid {user.split(':')[0]}" in DOCKERFILE        # in /etc/passwd, which ssh needs


def test_entrypoint_is_the_controller_under_an_init():
    [entry] = instructions("ENTRYPOINT")
    assert entry == '["/usr/bin/tini", "--", "python", "/app/mysocketd.py"]'
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
