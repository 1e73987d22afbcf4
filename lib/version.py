"""The one version of mysocketd: the repository's VERSION file.

The chart (version, appVersion), the image tag in yaml/, ``mysocketd --version``
and the edge (``python -m edge --version``, ``GET /health``) all say this;
tests/unit/test_version.py fails when one of them drifts. A file, not a Python
constant, so that the edge (which does not import lib/) and the Dockerfile read
the same bytes.
"""

from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"


def version() -> str:
    try:
        return VERSION_FILE.read_text().strip()
    except OSError:
        return "unknown"
