"""Batched look-ups of idempotency records, one store read for many commands.

Before a command is decided, the handlers ask whether its record stream (`request-<key>`
or `transfer-<key>`) exists: if it does, the command is a retry and is answered from the
record without being decided again. Deciding a retry would hand its actor a unit that can
never commit (its record stream conflicts), and every unit that actor decided after it
would fail too. One writer-style task gathers the questions that arrive while a read is
under way and asks them in the next read, so the cost per command stays a fraction of one
query.
"""

from __future__ import annotations

import asyncio

from pointex.server import limits
from pointex.server.eventstore.port import EventStore, StoreError

_Pending = tuple[str, "asyncio.Future[bool]"]


class RecordLookup:
    """Answer "does this record stream exist?" for many callers per store read."""

    def __init__(self, store: EventStore) -> None:
        """Look up streams in `store`."""
        self._store = store
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Launch the reading task."""
        assert self._task is None
        self._task = asyncio.create_task(self._run(), name="record-lookup")

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
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((stream_id, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._pending[: limits.record_lookup_streams_max]
            del self._pending[: limits.record_lookup_streams_max]
            try:
                versions = await self._store.stream_versions(
                    list(dict.fromkeys(stream_id for stream_id, _ in batch))
                )
            except StoreError as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for stream_id, future in batch:
                if not future.done():
                    future.set_result(versions[stream_id] > 0)
