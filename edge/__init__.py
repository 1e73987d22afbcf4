"""A Mysocket-compatible edge that runs on one machine.

Two processes: Python (this package) holds the REST API (``edge.api``,
aiohttp), accounts, quotas and policy, with state in a store (``edge.store``: SQLite for one node, PostgreSQL for many)
so a restart loses nothing; a Go data plane (``edge/dataplane/``, started and
supervised by ``edge.plane``) holds the SSH server that accepts reverse
forwards and the public HTTP, HTTPS/TLS and TCP fronts. ``edge.testing``
starts the edge as a subprocess for tests and benchmarks. The contract it
implements is /work/shared/mysocket-api.md; edge/README.md says why it is
split this way.
"""
