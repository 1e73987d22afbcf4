"""Custom hostnames: which names a socket may claim, and whether its account proved it controls one.

Why it is shaped this way:
- A custom name (``shop.example.com``, outside the zone) is served only once its account proved
  control of it through DNS, because the edge routes, passes TLS through and orders certificates
  by name: an unproven name must never route, and never cause an ACME order (the data plane is
  told verified names only, edge.planestate).
- Two proofs, either is enough (certmagic's on-demand "ask" decision, made here once per check
  instead of on each handshake): a CNAME of the name to the socket's generated ``dnsname``
  (which is also what makes visitors reach the edge), or a TXT record
  ``_mysocket-challenge.<name>`` holding the account's token for that name (for an apex, which
  cannot hold a CNAME, or a name whose traffic does not go through DNS yet). The token is an
  HMAC of the account and the name under the edge's signing secret: bound to the account (another
  account's token for the same name differs), the same on every node and stable across the
  account's sockets, so nothing about it needs storing.
- The answer is asked of ``--hostname-resolver`` (tests: a DNS server in the test's namespace)
  with dnspython. A check that could not ask (timeout, SERVFAIL) changes nothing: a proven name
  keeps serving through a resolver's hiccup; only an answer that lacks the proof takes it away.
"""

import asyncio
import hashlib
import hmac
import re
import time
from dataclasses import asdict, dataclass
from typing import Optional

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from .schema import BadInput

CHALLENGE_LABEL = "_mysocket-challenge"
MAX_HOSTNAMES = 20
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LIFETIME = 3.0          # seconds one check may take, every try included


@dataclass
class Claim:
    """One custom name of a socket as the store keeps it (a dict in ``Socket.hostnames``)."""
    hostname: str
    verified: bool = False
    checked: float = 0.0        # when its proof was last looked at (0: never)
    message: str = ""           # what the last check found, for the user

    def as_dict(self) -> dict:
        return asdict(self)


def claims(sock) -> list:
    return [Claim(**c) for c in sock.hostnames]


def verified_names(sock) -> list:
    return [c["hostname"] for c in sock.hostnames if c.get("verified")]


def parse(body: dict, zone: str, api_name: str) -> list:
    """The ``hostnames`` of PUT /socket/{id}/hostnames: valid names outside the zone, no repeats."""
    names = body.get("hostnames")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadInput("hostnames must be a list of host names (an empty list removes them all)")
    if len(names) > MAX_HOSTNAMES:
        raise BadInput("a socket holds at most {} hostnames".format(MAX_HOSTNAMES))
    out = []
    for raw in names:
        name = raw.strip().lower().rstrip(".")
        why = invalid(name, zone, api_name)
        if why:
            raise BadInput("hostname {!r}: {}".format(raw, why))
        if name not in out:
            out.append(name)
    return out


def invalid(name: str, zone: str, api_name: str) -> str:
    """Why name cannot be a custom hostname ("" when it can)."""
    labels = name.split(".")
    if name.startswith("*."):
        return "wildcards cannot be proven by one record: name each host"
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return "not a host name (letters, digits and '-', at least two labels)"
    if name == zone or name.endswith("." + zone) or name == api_name:
        return "names under {} are the edge's own: every socket has one already".format(zone)
    return ""


def token(key: bytes, user_id: str, name: str) -> str:
    """The TXT value that proves ``name`` for this account (the same on every node)."""
    mac = hmac.new(key, "mysocket-challenge|{}|{}".format(user_id, name).encode(), hashlib.sha256)
    return "mysocket-verify=" + mac.hexdigest()[:40]


def records(name: str, dnsname: str, txt: str) -> list:
    """The records that prove name (any one of them), as the API tells the user."""
    return [{"name": name, "type": "CNAME", "value": dnsname},
            {"name": "{}.{}".format(CHALLENGE_LABEL, name), "type": "TXT", "value": txt}]


def how_to(name: str, dnsname: str, txt: str) -> str:
    return ("create a CNAME record {} -> {}, or a TXT record {}.{} with the value {}".format(
        name, dnsname, CHALLENGE_LABEL, name, txt))


class Checker:
    """Asks DNS whether a name's proof is there (``resolver``: "host:port", "" = the system's)."""

    def __init__(self, resolver: str = ""):
        if resolver:
            host, _, port = resolver.rpartition(":")
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [host.strip("[]")]
            self._resolver.port = int(port)
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = LIFETIME

    async def _answers(self, name: str, rdtype: str) -> Optional[list]:
        """The answer's values ([] when the name or type has none), None when DNS gave no answer."""
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError):
            return None
        return [r.to_text() for r in answer.rrset] if answer.rrset is not None else []

    async def check(self, name: str, dnsname: str, txt: str) -> tuple:
        """(proven: True / False / None when DNS could not say, message)."""
        cnames, texts = await asyncio.gather(self._answers(name, "CNAME"),
                                             self._answers("{}.{}".format(CHALLENGE_LABEL, name), "TXT"))
        want = dns.name.from_text(dnsname)
        if cnames and any(dns.name.from_text(c) == want for c in cnames):
            return True, "verified by its CNAME to {}".format(dnsname)
        if texts and any(t.strip('"') == txt for t in texts):
            return True, "verified by its TXT record {}.{}".format(CHALLENGE_LABEL, name)
        if cnames is None and texts is None:
            return None, "DNS did not answer for {} (asked again later); to prove it, {}".format(
                name, how_to(name, dnsname, txt))
        found = " (it has a CNAME to {})".format(cnames[0].rstrip(".")) if cnames else ""
        return False, "not verified: no proof found for {}{}; {}".format(
            name, found, how_to(name, dnsname, txt))


def judged(claim: Claim, verdict: Optional[bool], message: str, now: Optional[float] = None) -> Claim:
    """The claim after one check: DNS that could not say changes nothing but the message of an
    unverified claim."""
    now = time.time() if now is None else now
    if verdict is None:
        return Claim(claim.hostname, claim.verified, now, claim.message if claim.verified else message)
    return Claim(claim.hostname, verdict, now, message)
