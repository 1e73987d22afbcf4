"""Generated names that look like the ones Kubernetes makes.

Namespaces per test must be unique and valid DNS labels (<= 63 chars, [a-z0-9-]);
stand-in pod names mimic a Deployment's pods (<deployment>-<hash>-<suffix>) so
the demo output reads like a real cluster's.
"""

import re
import secrets

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no 0/1/3).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def dns_label(text: str, suffix_length: int = 5) -> str:
    """`text` squeezed into a DNS label, plus a random suffix for uniqueness."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
    base = base[: 62 - suffix_length].strip("-")
    return f"{base}-{random_suffix(suffix_length)}"


def pod_name(workload: str) -> str:
    """A Deployment-style pod name for `workload`, e.g. demo-app-7f9c-k2x8q."""
    return f"{workload}-{secrets.token_hex(2)}-{random_suffix()}"
