"""Logging set-up: JSON lines by default, `key=value` text for humans.

Context (namespace, service, socket_id, ...) travels in `extra=`, so both
formats carry the same fields and a log pipeline can filter on them. The
Kubernetes and urllib3 loggers are held at WARNING: at DEBUG they would print
request headers, bearer tokens included.
"""

import logging
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

_STANDARD = set(RESERVED_ATTRS) | {"taskName"}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record):
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and v is not None}
        if extras:
            line += "  " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def setup(fmt="json", level="INFO", stream=None):
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level",
                                                          "name": "logger"},
                                           timestamp=False))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kubernetes", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
