"""The edge's test helpers (edge.testclients), under the name tests/edge imports them by."""

from edge.testclients import (Account, Backends, SshClients, forward_argv,  # noqa: F401
                              make_account, new_socket)
