"""A lock in the store that one node of the edge holds at a time (a ``meta`` row, compare-and-swap).

Why it is shaped this way: ordering a certificate (the zone's wildcard, a custom hostname's) must be
done by one node at a time, and nodes share nothing but the store. The row names the node and until
when it holds; it is taken only when absent, unreadable or expired (a node that died holding it
delays the next order by at most ``hold`` seconds), and given back by swapping exactly the value
that was taken, so a lock another node took after expiry is never released by the first.
"""

import json
import time
from typing import Optional

from .store import SqlStore, StoreUnavailable


async def take(store: SqlStore, key: str, node: str, hold: float) -> Optional[str]:
    """The lock's value when this node got it, None when another node holds it."""
    mine = json.dumps({"node": node, "until": time.time() + hold})
    held = await store.meta_get(key)
    if held is not None:
        try:
            if json.loads(held)["until"] > time.time():
                return None
        except (ValueError, KeyError, TypeError):
            pass                                  # unreadable: as good as expired
    return mine if await store.meta_swap(key, held, mine) else None


async def give_back(store: SqlStore, key: str, held: Optional[str]) -> None:
    try:
        await store.meta_swap(key, held, None)
    except StoreUnavailable:
        pass                                      # it expires by itself
