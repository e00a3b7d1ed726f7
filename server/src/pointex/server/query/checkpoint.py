"""The position the served projections have reached, and reads that wait for a later one.

The projector advances it only after a batch and its checkpoint are committed, so a read
that sees position P here finds every event up to P in the read store (read-your-writes).
"""

from __future__ import annotations

import asyncio
import contextlib

from pointex.server import limits
from pointex.server.grpc_edge.status import PositionNotReached, ShuttingDown

# A read ends itself this long before its deadline so that the client gets the reason
# (POSITION_NOT_REACHED) rather than the library's bare DEADLINE_EXCEEDED.
_DEADLINE_MARGIN_S = 0.05


class CheckpointWatch:
    """The committed checkpoint of the active projections, with a wake-up on each advance."""

    def __init__(self, position: int) -> None:
        """Start at the read store's checkpoint."""
        assert position >= 0, position
        self._position = position
        self._moved = asyncio.Event()
        self._closed = False

    @property
    def position(self) -> int:
        """Return the checkpoint: every event up to it is applied and committed."""
        return self._position

    @property
    def closed(self) -> bool:
        """Return whether the server is shutting down."""
        return self._closed

    def armed(self) -> asyncio.Event:
        """Return the event set at the next advance (take it before reading, then wait)."""
        return self._moved

    def advance(self, position: int) -> None:
        """Record a committed checkpoint and wake every waiter."""
        assert position >= self._position, (position, self._position)
        if position == self._position:
            return
        self._position = position
        self._fire()

    def close(self) -> None:
        """Wake every waiter for good: the server is shutting down."""
        self._closed = True
        self._fire()

    def _fire(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait_for(self, position: int, time_remaining_s: float | None) -> None:
        """Return once the checkpoint is at least `position`.

        Waits at most the call's remaining time (less a margin) and never more than
        `limits.read_wait_ms_max`.

        Raises:
            PositionNotReached: The checkpoint did not get there in time.
            ShuttingDown: The server began to shut down meanwhile.
        """
        if position <= self._position:
            return
        budget_s = limits.read_wait_ms_max / 1000
        if time_remaining_s is not None:
            budget_s = min(budget_s, time_remaining_s - _DEADLINE_MARGIN_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(budget_s, 0)):
                while position > self._position and not self._closed:
                    await self._moved.wait()
        if self._closed:
            raise ShuttingDown
        if position > self._position:
            raise PositionNotReached(position, self._position)
