"""Work the command server runs detached from its callers, and how it ends at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from pointex.server import limits

log = logging.getLogger(__name__)


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


async def retry_until_done(
    step: Callable[[], Awaitable[object]],
    *,
    retry_on: tuple[type[BaseException], ...],
    what: str,
) -> None:
    """Run `step` after a pause, again after each failure in `retry_on`, until it succeeds.

    The pause starts at `transfer_retry_delay_ms_min` and doubles up to its maximum. Any
    other exception ends the retries and propagates.
    """
    delay_ms = limits.transfer_retry_delay_ms_min
    while True:
        await asyncio.sleep(delay_ms / 1000)
        try:
            await step()
        except retry_on as error:
            log.warning("%s still pending: %s", what, error)
            delay_ms = min(delay_ms * 2, limits.transfer_retry_delay_ms_max)
        else:
            return
