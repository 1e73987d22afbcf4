"""The edge's sign-in flags: an OpenID Connect provider for sockets with cloud authentication.

The data plane does the sign-in (edge/dataplane/internal/signin); this module only
turns the operator's flags into its arguments. The client secret is read here
from ``--oidc-client-secret-file`` or ``EDGE_OIDC_CLIENT_SECRET`` and handed to
the data plane as a 0600 file in the data directory: never on a command line (any
local user can read those) and never in a log line.
"""

import argparse
import os
from pathlib import Path
from typing import Callable, Mapping


def add_flags(add: Callable) -> None:
    add("--oidc-issuer", "", "OpenID Connect issuer URL (e.g. https://accounts.google.com) with "
        "which visitors of sockets with cloud authentication sign in, and accounts to the "
        "dashboard; empty = such sockets answer 403")
    add("--oidc-client-id", "", "the edge's client id at the issuer; register the redirect URI "
        "https://<api-name>[:<https port>]/.edge/callback there")
    add("--oidc-client-secret-file", "", "file holding the edge's client secret (or set "
        "EDGE_OIDC_CLIENT_SECRET)")
    add("--signin-session", "43200", "seconds a visitor's sign-in lasts", type=float)
    add("--signin-per-minute", "30", "sign-in starts and callbacks per visitor (an address; "
        "IPv6 /64) per minute; 0 = no limit", type=float)
    add("--signin-public-url", "", "the edge's own name as visitors reach it, when a proxy or "
        "port mapping changes it (default: https://<api-name>[:<https port>])")


def plane_args(a: argparse.Namespace, env: Mapping[str, str], data_dir: Path,
               error: Callable[[str], None]) -> list:
    """The data plane's sign-in arguments (none without --oidc-issuer); ``error`` on bad flags."""
    issuer = a.oidc_issuer.strip()
    if not issuer:
        return []
    if not issuer.startswith(("https://", "http://")):
        error("--oidc-issuer: give the issuer's URL (https://...)")
    if not a.oidc_client_id.strip():
        error("--oidc-issuer needs --oidc-client-id")
    secret = env.get("EDGE_OIDC_CLIENT_SECRET", "")
    if a.oidc_client_secret_file:
        try:
            secret = Path(a.oidc_client_secret_file).read_text().strip()
        except OSError as exc:
            error("--oidc-client-secret-file: {}".format(exc.strerror or exc))
    if not secret:
        error("--oidc-issuer needs the client secret: --oidc-client-secret-file or EDGE_OIDC_CLIENT_SECRET")
    if a.signin_session <= 0 or a.signin_per_minute < 0:
        error("--signin-session must be > 0 and --signin-per-minute >= 0")
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "oidc-client-secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    args = ["--oidc-issuer", issuer, "--oidc-client-id", a.oidc_client_id.strip(),
            "--oidc-client-secret-file", str(path),
            "--signin-session", "{}s".format(a.signin_session),
            "--signin-per-minute", str(a.signin_per_minute)]
    if a.signin_public_url.strip():
        args += ["--signin-public-url", a.signin_public_url.strip()]
    return args
