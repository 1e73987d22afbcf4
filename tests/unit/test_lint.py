"""The checks that keep the code as it is meant to be, run by `make test` so CI fails on a violation.

ruff: one linter for every package (pyproject.toml says which rules). import-linter: lib/ and edge/
never import each other, and lib/'s modules import only from the layers below them
(pyproject.toml's contracts). And the apiserver's errors are the client library's in one module only
(lib/apierrors.py); every other module asks for the project's own classes.
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def run(*argv):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_ruff():
    result = run(str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts():
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_client_librarys_errors_are_imported_in_one_module():
    pattern = re.compile(r"^\s*(from|import)\s+(kubernetes\.client\.exceptions|urllib3\.exceptions)\b", re.M)
    importing = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("lib/*.py"), ROOT / "mysocketd.py"]
                       if pattern.search(p.read_text()))
    assert importing == ["lib/apierrors.py"]
    assert not [p for p in ROOT.glob("lib/*.py") if "ApiException" in p.read_text() and p.name != "apierrors.py"]
