"""Generated public names for sockets: ``<adjective>-<noun>-<4 digits>.<domain>``.

The shape copies the hosted Mysocket service (``blue-snowflake-1578``) so
clients and people see familiar names. Uniqueness is the caller's business
(``new_dnsname`` takes a ``taken`` predicate, so this module stays pure and
testable); with ~40x40x9000 names, collisions are rare and simply retried.
"""

import random
from typing import Callable

ADJECTIVES = (
    "amber autumn bold brave bright calm cold cool crimson damp dark dawn "
    "divine dry eager empty fancy frosty gentle green hidden holy icy jolly "
    "late lively long lucky misty morning muddy nameless odd old patient "
    "plain proud purple quiet rapid red restless rough round royal shiny "
    "shy silent small snowy solitary sparkling spring still summer sweet "
    "swift tiny twilight wandering weathered white wild winter wispy young"
).split()

NOUNS = (
    "art band bar base bird block boat bonus breeze brook bush butterfly "
    "cake cell cherry cloud credit darkness dawn dew disk dream dust "
    "feather field fire firefly flower fog forest frog frost glade glitter "
    "grass hall hat haze heart hill king lab lake leaf limit math meadow "
    "mode moon morning mountain mouse mud night paper pine poetry pond "
    "queen rain recipe resonance rice river salad scene sea shadow shape "
    "silence sky smoke snow snowflake sound star sun sunset surf term "
    "thunder tooth tree truth union unit violet voice water waterfall wave "
    "wildflower wind wood"
).split()

_MAX_ATTEMPTS = 1000


def candidate(domain: str, rng: random.Random) -> str:
    return "{}-{}-{:04d}.{}".format(
        rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.randrange(1000, 10000), domain)


def new_dnsname(domain: str, taken: Callable[[str], bool],
                rng: random.Random = random.SystemRandom()) -> str:
    """A generated name under domain for which taken(name) is False."""
    for _ in range(_MAX_ATTEMPTS):
        name = candidate(domain, rng)
        if not taken(name):
            return name
    raise RuntimeError("could not find a free dnsname")
