"""Batched look-ups of idempotency records, one store read for many commands.

Before a command is decided, the handlers ask whether its record stream (`request-<key>`
or `transfer-<key>`) exists: if it does, the command is a retry and is answered from the
record without being decided again. Deciding a retry would hand its actor a unit that can
never commit (its record stream conflicts), and every unit that actor decided after it
would fail too. One writer-style task gathers the questions that arrive while a read is
under way and asks them in the next read, so the cost per command stays a fraction of one
query.

Reads are paced by the group commit (`pace`): while a commit is under way, questions wait
for it to end and then go in one read. Unpaced, a command server under steady unary load
read once per one or two commands, since the next question arrived while each short read
was under way: as many store round trips as commands, which cost more than the commits
themselves. An idle committer adds no wait.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from pointex.server import limits
from pointex.server.eventstore.port import EventStore, StoreError

# The streams one caller asks about, and the future of their answers (in the same order).
_Pending = tuple[list[str], "asyncio.Future[list[bool]]"]


class RecordLookup:
    """Answer "does this record stream exist?" for many callers per store read."""

    def __init__(
        self, store: EventStore, pace: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Look up streams in `store`; each read waits for `pace()` first (when given)."""
        self._store = store
        self._pace = pace
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Kept from `start`: on Python 3.11 each look-up of the running loop is a system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Launch the reading task."""
        assert self._task is None
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="record-lookup")

    async def stop(self) -> None:
        """End the reading task; callers still waiting get an error."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for _, future in self._pending:
            if not future.done():
                future.set_exception(StoreError("the command server is shutting down"))
        self._pending.clear()

    async def exists(self, stream_id: str) -> bool:
        """Return whether `stream_id` has at least one event."""
        (found,) = await self.exists_many([stream_id])
        return found

    async def exists_many(self, stream_ids: list[str]) -> list[bool]:
        """Return whether each stream has at least one event, in the order given."""
        assert len(stream_ids) <= limits.record_lookup_streams_max, len(stream_ids)
        if not stream_ids:
            return []
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._pending.append((stream_ids, future))
        self._wake.set()
        return await future

    def _take_batch(self) -> list[_Pending]:
        """Take the oldest questions, up to `record_lookup_streams_max` streams in all."""
        batch: list[_Pending] = []
        streams = 0
        while self._pending:
            asked = len(self._pending[0][0])
            if batch and streams + asked > limits.record_lookup_streams_max:
                break
            batch.append(self._pending.popleft())
            streams += asked
        return batch

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._pace is not None:
                await self._pace()
            batch = self._take_batch()
            try:
                versions = await self._store.stream_versions(
                    list(dict.fromkeys(s for stream_ids, _ in batch for s in stream_ids))
                )
            except StoreError as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for stream_ids, future in batch:
                if not future.done():
                    future.set_result([versions[s] > 0 for s in stream_ids])
