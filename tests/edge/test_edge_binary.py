"""edge/binary.py: the data plane's binary is named by a hash of every source
file of every package, so a change anywhere under edge/dataplane/ builds a new
binary, and a missing Go says which version go.mod wants."""

import re
import shutil
from pathlib import Path

import pytest

from edge import binary


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def edit_nested(src):
    write(src / "internal" / "front" / "http.go", "package front\n// changed\n")


def move_between_packages(src):
    (src / "internal" / "auth").mkdir()
    (src / "internal" / "front" / "http.go").rename(src / "internal" / "auth" / "http.go")


def add_nested_test(src):
    write(src / "internal" / "front" / "http_test.go", "package front\n")


def edit_go_sum(src):
    write(src / "go.sum", "golang.org/x/crypto v0.60.0 h1:...\n")


def edit_main(src):
    write(src / "main.go", "package main\nfunc main() { println() }\n")


def add_a_note(src):
    write(src / "internal" / "front" / "NOTES.md", "not a source\n")


@pytest.mark.parametrize("change, rebuilds", [
    (edit_nested, True),
    (move_between_packages, True),
    (add_nested_test, True),
    (edit_go_sum, True),
    (edit_main, True),
    (add_a_note, False),
])
def test_source_hash_covers_every_package(tmp_path, monkeypatch, change, rebuilds):
    src = tmp_path / "dataplane"
    write(src / "go.mod", "module mysocketd/edge/dataplane\n\ngo 1.26.8\n")
    write(src / "go.sum", "golang.org/x/crypto v0.59.0 h1:...\n")
    write(src / "main.go", "package main\nfunc main() {}\n")
    write(src / "internal" / "front" / "http.go", "package front\n")
    monkeypatch.setattr(binary, "SOURCE_DIR", src)
    before = binary.source_hash()
    assert binary.source_hash() == before
    change(src)
    assert (binary.source_hash() != before) == rebuilds


def test_no_go_names_the_version_go_mod_wants(monkeypatch):
    wanted = re.search(r"^go (\S+)$", (binary.SOURCE_DIR / "go.mod").read_text(), re.M).group(1)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(binary.os, "access", lambda path, mode: False)
    with pytest.raises(binary.NoBinary, match=r"no `go` \(>= {}\) is on PATH".format(re.escape(wanted))):
        binary._go()
