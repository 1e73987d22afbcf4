"""Password hashing and the API's JWTs.

Why it is shaped this way:
- Passwords (account and protected-socket ones) are stored as salted scrypt
  hashes in one self-describing string, ``scrypt$n$r$p$salt$hash``, so the
  cost parameters can change later without breaking stored hashes.
- scrypt costs tens of milliseconds on purpose; callers on the event loop run
  ``verify_password``/``hash_password`` in a worker thread (see edge.api).
- Tokens are HS256 JWTs whose payload carries ``user_id`` (UUID with dashes)
  and ``exp``, as the contract requires. The signing secret lives in the data
  directory (mode 0600) so tokens stay valid across a restart of the edge.
"""

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Optional

import jwt

_N, _R, _P = 2 ** 14, 8, 1
SECRET_FILE = "jwt-secret"


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return "scrypt${}${}${}${}${}".format(
        _N, _R, _P, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password: str, stored: str) -> bool:
    """True when password matches the stored hash; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt),
                                n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to burn the same time on when the email is unknown, so response time
# does not tell an attacker which emails have accounts.
DUMMY_HASH = hash_password(secrets.token_hex(8))


def load_or_create_secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    if not path.exists():
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class TokenIssuer:
    """Issues and checks the API's access tokens."""

    def __init__(self, secret: bytes, lifetime: float):
        self._secret = secret
        self._lifetime = lifetime

    def issue(self, user_id: str) -> str:
        now = int(time.time())
        payload = {"user_id": user_id, "iat": now, "exp": now + int(max(1, self._lifetime))}
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def user_id(self, token: str) -> Optional[str]:
        """The token's user_id if its signature and expiry are good, else None."""
        try:
            payload = jwt.decode(token, self._secret, algorithms=["HS256"],
                                 options={"require": ["exp", "user_id"]})
        except jwt.PyJWTError:
            return None
        user_id = payload.get("user_id")
        return user_id if isinstance(user_id, str) else None
