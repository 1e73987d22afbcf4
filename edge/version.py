"""The edge's version: the repository's VERSION file, the same one mysocketd reports
(lib/version.py says why it is a file). The edge does not import lib/, so it reads
the file itself."""

from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"


def version() -> str:
    try:
        return VERSION_FILE.read_text().strip()
    except OSError:
        return "unknown"
