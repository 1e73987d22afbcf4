"""What ``--store`` names, and how it is shown in logs (never with its password)."""

import re


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def masked(url: str) -> str:
    """The store URL or conninfo without its password."""
    text = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text) or "sqlite (in the data dir)"
