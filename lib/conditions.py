"""metav1.Condition lists as the Gateway API's status wants them.

Every condition carries the generation of the spec it describes
(`observedGeneration`: the conformance suite waits for it to match), and a
`lastTransitionTime` that moves only when the status does, so that writing
the same verdict again changes nothing and costs no write at all
(`same_status` lets the controller skip it).
"""

import dataclasses
import datetime


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""

    def as_dict(self, generation, since):
        return {"type": self.type, "status": "True" if self.status else "False", "reason": self.reason,
                "message": self.message[:32768], "observedGeneration": generation, "lastTransitionTime": since}


def now_rfc3339(clock=None):
    moment = clock() if clock else datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def render(conditions, generation, previous=(), now=None):
    """The list to write: `conditions` (Condition) at `generation`, keeping each unchanged
    condition's lastTransitionTime from `previous` (the dicts the object carries now)."""
    now = now or now_rfc3339()
    before = {c.get("type"): c for c in previous or ()}
    out = []
    for cond in conditions:
        old = before.get(cond.type)
        unchanged = old is not None and old.get("status") == ("True" if cond.status else "False")
        out.append(cond.as_dict(generation, old.get("lastTransitionTime", now) if unchanged else now))
    return out


def find(conditions, type_):
    return next((c for c in conditions or () if c.get("type") == type_), None)


def same_status(a, b):
    """Whether two status dicts say the same thing (ignoring when it was first said)."""
    return _strip(a) == _strip(b)


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
