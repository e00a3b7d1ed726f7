"""Group commit: appends from many actors go to the store in one transaction.

Actors call `submit(unit)` and get a future; one writer task takes every unit waiting
(up to the batch bounds), commits them with `EventStore.append_batch`, and resolves each
future with its recorded events, its `WrongExpectedVersion`, or the batch's `StoreError`.
While one batch commits, the next one gathers, so the batch grows with the load and the
cost of a commit (an fsync) is shared. A reply leaves only after its future resolves,
so acknowledged means committed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence

from pointex.server import limits
from pointex.server.eventstore.port import (
    EventStore,
    RecordedEvent,
    StoreError,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
)
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)

Unit = tuple[StreamAppend, ...]
_Pending = tuple[Unit, int, "asyncio.Future[list[RecordedEvent]]"]


class GroupCommitter:
    """The single writer task of a command server."""

    def __init__(self, store: EventStore) -> None:
        """Prepare a committer over `store`; `start()` launches its task."""
        self._store = store
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_events = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Kept from `start` rather than looked up per unit: on Python 3.11 every look-up of
        # the running loop costs a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        # Resolved when the commit under way ends; None while none is.
        self._round: asyncio.Future[None] | None = None
        # Counts since start, read by the metrics at each scrape.
        self.batches_committed = 0
        self.units_committed = 0
        self.events_committed = 0

    def start(self) -> None:
        """Launch the writer task."""
        assert self._task is None
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Commit what is queued, then end the writer task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def abort(self) -> None:
        """Stop at once, committing nothing more: what a crash does (used to simulate one)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for _, _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pending_events = 0

    def submit(self, unit: Sequence[StreamAppend]) -> asyncio.Future[list[RecordedEvent]]:
        """Queue one all-or-nothing unit; the future resolves once it is committed (or not)."""
        events = sum(len(append.events) for append in unit)
        assert 0 < events <= limits.append_batch_events_max, events
        if self._closing:
            raise StoreUnavailable("the command server is shutting down")
        if self._pending_events + events > limits.commit_queue_events_max:
            raise Overloaded(
                "OVERLOADED", "the commit queue is full", limits.overload_retry_after_ms
            )
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[RecordedEvent]] = loop.create_future()
        self._pending.append((tuple(unit), events, future))
        self._pending_events += events
        self._wake.set()
        return future

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        events = 0
        while self._pending and len(batch) < limits.append_batch_units_max:
            unit_events = self._pending[0][1]
            if batch and events + unit_events > limits.append_batch_events_max:
                break
            batch.append(self._pending.popleft())
            events += unit_events
        self._pending_events -= events
        return batch

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            loop = self._loop or asyncio.get_running_loop()
            self._round = loop.create_future()
            try:
                await self._commit(self._take_batch())
            finally:
                self._round.set_result(None)
                self._round = None

    async def between_commits(self) -> None:
        """Return once the commit under way, if any, has ended (at once when none is).

        Readers that batch their own store reads wait here to read once per commit rather
        than once per question (command/app/record_lookup.py).
        """
        round_ = self._round
        if round_ is not None:
            await asyncio.shield(round_)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await self._store.append_batch([unit for unit, _, _ in batch])
        except StoreError as error:
            log.warning("group commit failed: %s", error, extra={"units": len(batch)})
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except Exception as error:  # A bug in a store adapter must not kill the writer.
            log.exception("group commit crashed", extra={"units": len(batch)})
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"append failed: {error!r}"))
            return
        self.batches_committed += 1
        for (_, events, future), result in zip(batch, results, strict=True):
            if future.done():  # The caller went away (cancelled); the commit stands.
                continue
            if isinstance(result, WrongExpectedVersion):
                future.set_exception(result)
            else:
                self.units_committed += 1
                self.events_committed += events
                future.set_result(result)
