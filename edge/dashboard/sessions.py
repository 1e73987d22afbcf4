"""The dashboard's sessions and CSRF tokens: signed cookies, no server-side table.

Why it is shaped this way:
- A session is ``user_id.session_id.expiry.mac`` in one cookie, signed with a
  key derived from the edge's token secret (``jwt-secret``, which every node
  of a many-node edge shares), so any node accepts a session another node
  issued and nothing is stored. The key is derived for this use alone: an API
  token is not a session, and a session is not an API token.
- The cookie is ``__Host-`` prefixed, ``Secure``, ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/``: no script reads it, no other site sends it,
  no sub-domain (every socket's name is one) can set or read it.
- Sessions expire (the edge's ``--token-lifetime``, as API tokens do). Signing
  out forgets the cookie in the browser and revokes the session id on this
  node until it expires (a bounded dict; on a many-node edge the other nodes
  do not learn of it, edge/README.md says so).
- CSRF: every form carries ``mac("csrf", session id)``; the sign-in form,
  before there is a session, carries ``mac("csrf", nonce)`` of a short-lived
  ``__Host-`` nonce cookie. A POST without both halves matching is refused.
"""

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Optional

SESSION_COOKIE = "__Host-edge-session"
SIGNIN_COOKIE = "__Host-edge-signin"
SIGNIN_LIFETIME = 1800          # seconds a sign-in form stays good
REVOKED_MAX = 100_000


@dataclass(frozen=True)
class Session:
    user_id: str
    session_id: str
    expires: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Sessions:
    def __init__(self, secret: bytes, lifetime: float, clock: Callable[[], float] = time.time):
        self._key = hmac.new(secret, b"mysocketd edge dashboard sessions v1", hashlib.sha256).digest()
        self.lifetime = int(max(1, lifetime))
        self._clock = clock
        self._revoked: dict = {}            # session_id -> expires

    def _mac(self, *parts: str) -> str:
        return _b64(hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).digest())

    def issue(self, user_id: str) -> str:
        """A new session's cookie value."""
        sid = secrets.token_urlsafe(18)
        expires = int(self._clock()) + self.lifetime
        payload = "{}.{}.{}".format(user_id, sid, expires)
        return payload + "." + self._mac("session", payload)

    def check(self, value: Optional[str]) -> Optional[Session]:
        """The session in this cookie value if it is ours, unexpired and not signed out."""
        if not value or value.count(".") != 3:
            return None
        payload, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        user_id, sid, expires = payload.split(".")
        try:
            session = Session(user_id, sid, int(expires))
        except ValueError:
            return None
        if session.expires <= self._clock() or sid in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        now = self._clock()
        if len(self._revoked) >= REVOKED_MAX:
            self._revoked = {s: e for s, e in self._revoked.items() if e > now}
        if len(self._revoked) < REVOKED_MAX:
            self._revoked[session.session_id] = session.expires

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(18)

    def csrf(self, binding: str) -> str:
        """The form token for a session id (or a sign-in nonce)."""
        return self._mac("csrf", binding)

    def csrf_ok(self, binding: Optional[str], token: Optional[str]) -> bool:
        return bool(binding) and bool(token) and hmac.compare_digest(token, self.csrf(binding))
