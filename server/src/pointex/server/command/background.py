"""Work the command server runs detached from its callers, and how it ends at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any


async def finish_within(tasks: Collection[asyncio.Task[Any]], timeout_ms: int) -> None:
    """Let `tasks` finish within `timeout_ms`; cancel the rest and wait until they end.

    A process step cancelled here stays open in the log; recovery finishes it at next start.
    """
    if not tasks:
        return
    _, stuck = await asyncio.wait(set(tasks), timeout=timeout_ms / 1000)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
