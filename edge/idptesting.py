"""A real OpenID Connect provider for the sign-in tests: zitadel/oidc's example OP.

    with IdentityProvider(tmp_path, redirect_uri, users=[IdpUser("alice", "pw", "alice@a.test")]) as idp:
        idp.issuer        # http://localhost:<port>/ ; the client is "web" / "secret"

Why it is shaped this way:
- The OP is the example server of github.com/zitadel/oidc/v3 (a certified
  library), built by ``make build`` (devcluster/build.sh) at the version pinned in
  devcluster/versions.env: a real discovery document, login page, code flow
  with PKCE, signed ID tokens, JWKS and userinfo. It takes its port, its users
  (a JSON file) and the redirect URIs of its clients from the environment, so
  a test starts it only once the edge's callback URL is known.
- Its issuer is ``http://localhost:<port>/`` (the example hard-codes the name);
  the browser maps every name to loopback, and so does the data plane's resolver.
- Output goes to a file, readiness is the discovery document answering, and the
  process is killed by PID on the way out, whatever happened.
"""

import json
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devcluster.binaries import idp_binary

CLIENT_ID = "web"
CLIENT_SECRET = "secret"


@dataclass
class IdpUser:
    username: str
    password: str
    email: str
    email_verified: bool = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IdentityProvider:
    def __init__(self, workdir: Path, redirect_uri: str, users: list, port: int = 0):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.issuer = "http://localhost:{}/".format(self.port)
        self.redirect_uri = redirect_uri
        self.users = users
        self._proc = None

    def __enter__(self) -> "IdentityProvider":
        self.workdir.mkdir(parents=True, exist_ok=True)
        users = {"id{}".format(i): {"ID": "id{}".format(i), "Username": u.username, "Password": u.password,
                                    "FirstName": u.username, "LastName": "Test", "Email": u.email,
                                    "EmailVerified": u.email_verified, "PreferredLanguage": "en"}
                 for i, u in enumerate(self.users)}
        users_file = self.workdir / "idp-users.json"
        users_file.write_text(json.dumps(users))
        env = {"PORT": str(self.port), "USERS_FILE": str(users_file), "REDIRECT_URI": self.redirect_uri,
               "PATH": "/usr/bin:/bin"}
        with open(self.workdir / "idp.log", "wb") as log:
            self._proc = subprocess.Popen([str(idp_binary())], env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.issuer + ".well-known/openid-configuration", timeout=2) as r:
                    if json.load(r).get("issuer") == self.issuer:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("the identity provider did not come up: " + self.log_tail())

    def log_tail(self, n: int = 40) -> str:
        path = self.workdir / "idp.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(10)

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False
