"""What the parts of the edge share inside one process.

One object instead of long parameter lists: the API, the SSH server and the
fronts all get the same ``EdgeState``. Everything in it is touched only from
the event loop's thread.
"""

from dataclasses import dataclass, field

from .forwards import ForwardRegistry
from .store import Store


@dataclass
class EdgeState:
    store: Store
    registry: ForwardRegistry = field(default_factory=ForwardRegistry)
    ssh_connections: set = field(default_factory=set)   # live asyncssh connections
    tasks: set = field(default_factory=set)             # live public connections
