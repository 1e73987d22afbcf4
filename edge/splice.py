"""Copy bytes both ways between a visitor's TCP connection and a tunnel channel.

Why it is shaped this way:
- Each direction is its own task and forwards end-of-file as a half-close
  (``write_eof``), so request/response protocols that close one side first
  (HTTP/1.0, many TCP services) work exactly as through a plain TCP proxy.
- An error in either direction (reset, channel closed because the ssh client
  died) ends both at once; the connection is torn down rather than left
  half-alive.
- Works with asyncio streams on one side and asyncssh's SSHReader/SSHWriter on
  the other: both offer read(n), write, drain, write_eof, close.
- ``track_current_task`` lets the edge cancel every live connection when it
  shuts down, so SIGTERM stops the process promptly.
"""

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


async def _pump(src, dst) -> None:
    while True:
        data = await src.read(CHUNK)
        if not data:
            break
        dst.write(data)
        await dst.drain()
    with contextlib.suppress(Exception):
        dst.write_eof()


def _close(writer) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def splice(visitor: tuple, tunnel: tuple, first: bytes = b"") -> None:
    """Splice (reader, writer) pairs until both directions ended or one failed.

    ``first`` is written to the tunnel before anything else (the request head
    the HTTP front already read to route the connection).
    """
    v_reader, v_writer = visitor
    t_reader, t_writer = tunnel
    if first:
        t_writer.write(first)
    tasks = [asyncio.ensure_future(_pump(v_reader, t_writer)),
             asyncio.ensure_future(_pump(t_reader, v_writer))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("splice ended by %r", task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _close(t_writer)
        _close(v_writer)


@contextlib.contextmanager
def track_current_task(tasks: set):
    """Keep the running task in ``tasks`` while the block runs."""
    task = asyncio.current_task()
    tasks.add(task)
    try:
        yield
    finally:
        tasks.discard(task)
