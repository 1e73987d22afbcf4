"""A Service's custom hostnames (`mysocket.io/hostnames`) on its socket, and what its user is told.

Why it is shaped this way: the edge serves a custom name only once the account proved, through DNS,
that it controls it (edge/README.md, "Custom hostnames"), so setting a name is a request, not a fact.
The controller gives the socket the annotation's names (`PUT /socket/{id}/hostnames`, which also
checks unproven names at once) and tells the user, by an Event on the Service each time a name's state
changes, whether it is served or which record to create. While a name is unproven it asks the edge
again every RECHECK seconds, so a record created later is seen without another edit of the Service.
A name the edge refuses (another account proved it, a name under the edge's own zone) is a Warning
Event with the edge's reason; the Service keeps its generated name either way.

Events say what changed and expire after an hour; the condition `mysocket.io/HostnamesVerified` says
what is true now (`kubectl get svc -o yaml`, and tools that read conditions): True once every name
is served, else False with each unproven name's record to create, or the edge's refusal.
"""

import logging
import time

from lib import mysocket

log = logging.getLogger(__name__)

RECHECK = 30.0
CONDITION = "mysocket.io/HostnamesVerified"


def names_on(socket):
    return tuple(sorted(h["hostname"] for h in socket.get("hostnames") or []))


class CustomNames:
    """Per Service: the names last given to the edge and the state last told to the user."""

    def __init__(self, sockets, event, requeue, condition, clock=time.monotonic):
        self._sockets = sockets         # lib.sockets.Sockets
        self._event = event             # event(svc, kind, reason, message)
        self._condition = condition     # condition(svc, (ok, reason, message) or None for none)
        self._requeue = requeue         # requeue(key, seconds)
        self._clock = clock
        self._told = {}                 # key -> {name: (verified, message)} as last told
        self._asked = {}                # key -> (names, when) of the last PUT
        self._refused = {}              # key -> (names, message) the edge refused

    def sync(self, key, svc, exposure, socket):
        want = tuple(exposure.hostnames)
        if "hostnames" not in socket:
            if want and self._refused.get(key, (None,))[0] != want:
                self._refused[key] = (want, "")
                self._event(svc, "Warning", "HostnamesUnsupported", "this edge does not serve custom hostnames "
                            f"(its sockets have no `hostnames`): {', '.join(want)} are not set")
            self._condition(svc, (False, "Unsupported", "this edge does not serve custom hostnames")
                            if want else None)
            return
        if self._due(key, want, socket):
            try:
                self._sockets.update_hostnames(socket, want)
                self._asked[key] = (want, self._clock())
                self._refused.pop(key, None)
            except mysocket.ApiError as e:
                if e.status not in (400, 409):     # 400: not a name it takes; 409: another account's
                    raise
                self._refuse(key, svc, want, e)
        refused = self._refused.get(key)
        if refused and refused[0] == want:
            self._condition(svc, (False, "Refused", f"the edge refused {', '.join(want)}: {refused[1]}"))
            return
        self._tell(key, svc, socket)
        self._condition(svc, verdict(socket))
        if any(not h.get("verified") for h in socket.get("hostnames") or []):
            self._requeue(key, RECHECK)

    def _due(self, key, want, socket):
        if self._refused.get(key, (None,))[0] == want:
            return False                # told already; a new annotation value is asked again
        if names_on(socket) != want:
            return True
        unproven = any(not h.get("verified") for h in socket.get("hostnames") or [])
        names, when = self._asked.get(key, ((), -RECHECK))
        return unproven and (names != want or self._clock() - when >= RECHECK)

    def _refuse(self, key, svc, want, error):
        self._refused[key] = (want, error.message)
        self._event(svc, "Warning", "HostnameRefused", f"the edge refused {', '.join(want)}: {error.message}")
        log.warning("custom hostnames refused: %s", error.message)

    def _tell(self, key, svc, socket):
        told = self._told.setdefault(key, {})
        for h in socket.get("hostnames") or []:
            state = (bool(h.get("verified")), h.get("message", ""))
            if told.get(h["hostname"], (None,))[0] == state[0]:
                continue
            told[h["hostname"]] = state
            if state[0]:
                self._event(svc, "Normal", "HostnameVerified", f"{h['hostname']} is served: {state[1]}")
            else:
                self._event(svc, "Warning", "HostnameUnverified", f"{h['hostname']} is not served yet: {state[1]}")
        for name in set(told) - set(names_on(socket)):
            del told[name]

    def forget(self, key):
        """The Service is gone or not exposed any more (its condition is taken off with the rest)."""
        for table in (self._told, self._asked, self._refused):
            table.pop(key, None)



def verdict(socket):
    """(ok, reason, message) of CONDITION for the names the socket carries; None when it carries none."""
    names = socket.get("hostnames") or []
    if not names:
        return None
    unproven = [h for h in names if not h.get("verified")]
    if not unproven:
        return True, "Verified", "served: " + ", ".join(sorted(h["hostname"] for h in names))
    return False, "Unverified", "; ".join(f"{h['hostname']}: {h.get('message', 'not verified')}"
                                          for h in sorted(unproven, key=lambda h: h["hostname"]))
