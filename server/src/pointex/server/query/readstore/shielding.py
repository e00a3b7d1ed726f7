"""Let a read-store transaction finish even when its caller is cancelled.

A batch is one short transaction. Cancelling the caller mid-COMMIT (at shutdown, or when the
feed subscription is torn down) must neither leave the connection inside a half-finished
transaction nor hide the cancellation: the transaction runs to its end, then the caller's
cancellation goes on. Whether the batch committed is then read back from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`; if cancelled meanwhile, wait for it to end, then re-raise the cancel."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # Bounded by one batch's transaction. Its own outcome no longer matters to a caller
        # that is going away; the cancellation does.
        with contextlib.suppress(Exception):
            await task
        raise
