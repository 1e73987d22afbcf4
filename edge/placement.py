"""Where a tunnel goes: which live node its client should connect to (pure, table-tested).

Why it is shaped this way: a socket's tunnels go to distinct nodes, so losing
one node never takes a name down while another tunnel exists; among the
nodes the socket does not use yet, the least loaded wins, and ties go by
name, so every node that computes a placement for the same inputs gets the
same answer (tunnels moved off a dead node by two nodes at once land in the
same place). Only when every live node already holds one of the socket's
tunnels does a node get a second one.
"""

from typing import Optional


def choose(live: list, taken: list, load: dict) -> Optional[str]:
    """The node for a new tunnel: ``live`` node names, ``taken`` the nodes of the socket's
    other tunnels, ``load`` tunnels per node. None when no node is live."""
    if not live:
        return None
    free = [n for n in live if n not in taken]
    pool = free or live
    return min(pool, key=lambda n: (taken.count(n), load.get(n, 0), n))
