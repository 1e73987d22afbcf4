"""A Mysocket-compatible edge that runs on one machine.

One process, one asyncio event loop: an aiohttp REST API (``edge.api``), an
asyncssh server that accepts reverse forwards (``edge.sshd``), and a public
HTTP/TCP front that splices visitors onto those forwards (``edge.front``,
``edge.tcpfront``). State lives in SQLite (``edge.store``) so a restart loses
nothing. ``edge.testing`` starts it as a subprocess for tests and benchmarks.
The contract it implements is /work/shared/mysocket-api.md.
"""
