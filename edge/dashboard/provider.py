"""Signing in to the dashboard with the edge's identity provider: the data plane's assertion,
verified here.

Why it is shaped this way:
- The data plane is the edge's one OpenID Connect relying party
  (edge/dataplane/internal/signin). The dashboard's button sends the browser to its
  sign-in for the edge's own name (``/.edge/start?rd=<LANDING>``); once the provider
  and the browser's binding agree, the data plane passes that one request on to
  LANDING with ``Mysocket-Visitor-Assertion``, a JWT it signed, as it does for apps.
- Only the assertion counts, and only once verified: its signature against the
  key of the data plane's JWKS (asked over the control socket at each sign-in, so a
  restarted data plane's key is never stale), EdDSA and nothing else, its audience
  the API's name (an assertion made for a socket's host is not one for the
  dashboard), its issuer, and its expiry. The ``Mysocket-Visitor-Email`` header
  beside it is not signed and is never read: the e-mail is the assertion's.
- The data plane removes whatever a visitor sends under these names on the way to
  the API, so through the edge's own name only its own assertion ever arrives; on
  the plain API port nobody but the edge's key can make one that verifies.
"""

import urllib.parse
from dataclasses import dataclass
from typing import Awaitable, Callable

import jwt

ASSERTION = "Mysocket-Visitor-Assertion"
LANDING = "/dashboard/sign-in/provider"
START = "/.edge/start?" + urllib.parse.urlencode({"rd": LANDING})
LEEWAY = 5          # seconds of clock difference tolerated (the data plane and this process share a host)


class NotVerified(Exception):
    """The assertion is not one the edge made for the dashboard; the message says why."""


@dataclass
class ProviderSignIn:
    issuer: str                              # --oidc-issuer: the button names its host
    audience: str                            # the API's name (--api-name), lower case
    keys: Callable[[], Awaitable[dict]]      # the data plane's {"issuer", "audience", "jwks"}

    @property
    def label(self) -> str:
        return urllib.parse.urlsplit(self.issuer).netloc or self.issuer

    async def email(self, assertion: str) -> str:
        """The e-mail the edge verified, from its assertion; NotVerified says why not
        (edge.plane.DataPlaneError: the data plane cannot be asked right now)."""
        keys = await self.keys()
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            found = [k for k in keys.get("jwks", {}).get("keys", []) if k.get("kid") == kid]
            if not found:
                raise NotVerified("signed with a key this edge does not have")
            claims = jwt.decode(assertion, jwt.PyJWK(found[0]).key, algorithms=["EdDSA"],
                                audience=self.audience, issuer=keys.get("issuer"), leeway=LEEWAY,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise NotVerified(str(exc)) from None
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email or email != claims.get("sub"):
            raise NotVerified("the assertion names no e-mail address")
        return email.strip().lower()
