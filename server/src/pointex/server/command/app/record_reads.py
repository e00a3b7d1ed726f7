"""Reads of process records, those asked during one turn of the event loop in one store read.

A transfer's next step is decided from its record: the first events of its stream
(`TransferInitiated`, then `TransferCredited` for a fee). Many are read at once when another
server asks this one for the credits of a batch of transfers (each credit reads its record),
and when a bulk message's retries are answered from their records. Each read asked during
one turn of the event loop waits for the end of the turn, then all of them go in one store
read (`EventStore.read_stream_starts`), instead of one round trip each.
"""

from __future__ import annotations

import asyncio

from pointex.server import limits
from pointex.server.eventstore.port import EventStore, RecordedEvent, StoreError

_Waiting = dict[str, list["asyncio.Future[list[RecordedEvent]]"]]


class RecordReads:
    """Read the first events of record streams, many callers per store read."""

    def __init__(self, store: EventStore, count: int = limits.read_starts_events_max) -> None:
        """Read the first `count` events of each stream asked for, from `store`."""
        self._store = store
        self._count = count
        self._waiting: _Waiting = {}
        self._reads: set[asyncio.Task[None]] = set()  # Reads under way (kept referenced).

    async def first_events(self, stream_id: str) -> list[RecordedEvent]:
        """Return the first events of `stream_id` (none if it does not exist)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[RecordedEvent]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._read_waiting)  # At the end of this turn of the loop.
        self._waiting.setdefault(stream_id, []).append(future)
        return await future

    def _read_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        stream_ids = list(waiting)
        for start in range(0, len(stream_ids), limits.read_starts_streams_max):
            chunk = {
                s: waiting[s] for s in stream_ids[start : start + limits.read_starts_streams_max]
            }
            read = asyncio.ensure_future(self._read(chunk))
            self._reads.add(read)
            read.add_done_callback(self._reads.discard)

    async def _read(self, waiting: _Waiting) -> None:
        try:
            found = await self._store.read_stream_starts(list(waiting), self._count)
        except StoreError as error:
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        for stream_id, futures in waiting.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(stream_id, []))
