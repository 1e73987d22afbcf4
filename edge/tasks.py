"""Background tasks of the edge: stopping one is cancel, then wait for it to end."""

import asyncio
from typing import Optional


async def cancel(*tasks: Optional[asyncio.Task]) -> None:
    """Cancel each task (None: skipped) and wait until it has ended."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
