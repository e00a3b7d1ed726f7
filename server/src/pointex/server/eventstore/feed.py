"""Follow the log for a subscriber: catch-up in pages, then wait for a wake-up signal.

Both backends share this loop. Positions are gap-free and in commit order, so a plain
"position > last" read never skips an event; the loop asserts that on every event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from pointex.server import limits
from pointex.server.eventstore.port import RecordedEvent

ReadAll = Callable[[int, int], Awaitable[list[RecordedEvent]]]
BeforeWait = Callable[[], Awaitable[None]]


class AppendSignal:
    """Wake every waiting subscriber of one store when events are committed.

    A subscriber takes the current event *before* it reads, so a commit that lands between
    its read and its wait still wakes it (the event it holds is already set).
    """

    def __init__(self) -> None:
        """Start with no commit signalled."""
        self._event = asyncio.Event()

    def armed(self) -> asyncio.Event:
        """Return the event the next `fire` sets."""
        return self._event

    def fire(self) -> None:
        """Wake everyone holding the current event, and arm a fresh one."""
        self._event.set()
        self._event = asyncio.Event()


async def follow(
    read_all: ReadAll,
    signal: AppendSignal,
    after_position: int,
    *,
    idle_ms: int = limits.subscribe_idle_ms_max,
    before_wait: BeforeWait | None = None,
) -> AsyncIterator[RecordedEvent]:
    """Yield every event after ``after_position`` in position order, forever.

    Args:
        read_all: The store's ``read_all``.
        signal: Fired by the store (and its cross-process listener) after each commit.
        after_position: Position of the last event the subscriber already has.
        idle_ms: Longest sleep without a signal, for commits that nobody signals.
        before_wait: Called before each wait, e.g. to (re)start a notification listener.
    """
    assert after_position >= 0, after_position
    assert 1 <= idle_ms <= limits.subscribe_idle_ms_max, idle_ms
    page_events_max = limits.subscribe_buffer_events_max
    last_position = after_position
    while True:
        woken = signal.armed()
        page = await read_all(last_position, page_events_max)
        for event in page:
            # Gap-free positions are the promise the feed keeps; a hole here is a bug.
            assert event.position == last_position + 1, (last_position, event.position)
            last_position = event.position
            yield event
        if len(page) == page_events_max:
            continue
        if before_wait is not None:
            await before_wait()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives as the wake-up fires, and the feed would never stop. asyncio takes
        # seconds; the bound is kept in integer milliseconds.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_ms / 1000):
                await woken.wait()
