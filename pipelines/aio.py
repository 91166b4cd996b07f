"""Small asyncio helpers shared by the live transports."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def finish_even_if_cancelled(task: asyncio.Task[T]) -> T:
    """Wait for ``task`` to finish even if the caller is cancelled meanwhile, any number of times.

    Clean-up code (closing a session, releasing a slot) must not be cut short by a second
    cancellation — Ray, for one, re-sends a request's cancellation every few seconds until the
    request ends. The caller's cancellation is re-raised once ``task`` is done; ``task``'s own
    error, if any, is raised otherwise.
    """
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    result = task.result()  # raises the task's own error
    if cancelled:
        raise asyncio.CancelledError("cancelled while cleaning up")
    return result
