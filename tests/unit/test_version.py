"""One version everywhere: the VERSION file, the chart, the image tag the manifests
run, the README's build line, `mysocketd --version` and the edge's `--version`.

A release bumps VERSION; this test names every other place that must follow.
"""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VERSION = (REPO / "VERSION").read_text().strip()


def test_the_version_is_semver():
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", VERSION), VERSION


def test_the_chart_says_it():
    chart = yaml.safe_load((REPO / "charts/mysocketd/Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)


def test_every_manifest_runs_that_image():
    for path in (REPO / "yaml/mysocketd.yaml", REPO / "yaml/uninstall/job.yaml"):
        tags = re.findall(r"image: \S+/mysocketd:(\S+)", path.read_text())
        assert tags and set(tags) == {VERSION}, (path.name, tags)
    assert f"mysocketd:{VERSION} ." in (REPO / "README.md").read_text()


def test_the_image_carries_the_file():
    allowed = (REPO / ".dockerignore").read_text().splitlines()
    assert "!VERSION" in allowed
    assert "COPY VERSION /app/VERSION" in (REPO / "Dockerfile").read_text()


def test_mysocketd_and_the_edge_report_it():
    for argv, name in (([str(REPO / "mysocketd.py")], "mysocketd"), (["-m", "edge"], "mysocketd edge")):
        out = subprocess.run([sys.executable, *argv, "--version"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert out.strip() == f"{name} {VERSION}"


def test_the_changelog_has_it():
    assert f"## {VERSION}" in (REPO / "CHANGELOG.md").read_text()
