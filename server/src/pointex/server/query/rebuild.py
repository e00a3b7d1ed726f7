"""RebuildProjections: replay the whole log into a fresh generation, then switch or compare.

A rebuild has its own EventFeed subscription from position 0 and writes into a new
generation of tables while the active one keeps serving and following the feed; each of its
batches is written while the next is read and projected. When it is within one batch of the
live checkpoint it pauses the projector (the live feed stops between two batches, the last
one committed), applies exactly the events up to the live checkpoint, and then either makes
its generation the active one (nothing is re-read by clients: positions, cursors and page
tokens are the same in both) or, with `compare_only`, counts the rows that differ and drops
it. The replaced generation is dropped `limits.retired_generation_keep_ms` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass

import grpc

from pointex.client.positions import decode_global, position_message
from pointex.server import limits
from pointex.server.grpc_edge.status import ShuttingDown
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.feed_subscriber import Backoff, FeedClient, FeedState, Subscription
from pointex.server.query.projector import Projector
from pointex.server.query.readstore.port import ReadStore
from pointex.server.query.views import timestamp
from pointex.v1 import event_feed_pb2, events_pb2
from pointex.v1 import query_service_pb2 as pb

log = logging.getLogger(__name__)


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(slots=True)
class RebuildRun:
    """Progress and outcome of one rebuild."""

    rebuild_id: str
    compare_only: bool
    started_at_us: int
    events_at_start: int
    state: pb.RebuildState.ValueType = pb.REBUILD_STATE_RUNNING
    progress: int = 0
    events_applied: int = 0
    finished_at_us: int = 0
    mismatch_count: int = 0
    error_message: str = ""

    def message(self) -> pb.RebuildStatus:
        """Return the proto RebuildStatus."""
        status = pb.RebuildStatus(
            rebuild_id=self.rebuild_id,
            state=self.state,
            compare_only=self.compare_only,
            progress=position_message(self.progress),
            events_applied=self.events_applied,
            events_at_start=self.events_at_start,
            started_at=timestamp(self.started_at_us),
            mismatch_count=self.mismatch_count,
            error_message=self.error_message,
        )
        if self.finished_at_us:
            status.finished_at.CopyFrom(timestamp(self.finished_at_us))
        return status


class _Source:
    """The rebuild's own subscription: events taken up to a position, reconnecting as needed."""

    def __init__(self, client: FeedClient) -> None:
        self._client = client
        self._position = 0  # of the last event taken
        self._pending: list[events_pb2.Event] = []
        self._call: Subscription | None = None

    async def take(self, up_to: int | None) -> list[events_pb2.Event]:
        """Return the next events (none after a heartbeat), only those at or before `up_to`."""
        if not self._pending:
            response = await self._next()
            if response.WhichOneof("message") == "events":
                self._pending = list(response.events.events)
        pending = self._pending
        if up_to is None or (pending and decode_global(pending[-1].position.token) <= up_to):
            taken, self._pending = pending, []  # All of it: positions only grow.
        else:
            taken = list(
                itertools.takewhile(lambda e: decode_global(e.position.token) <= up_to, pending)
            )
            self._pending = pending[len(taken) :]
        if taken:
            self._position = decode_global(taken[-1].position.token)
        return taken

    async def _next(self) -> event_feed_pb2.SubscribeResponse:
        backoff = Backoff()
        while True:
            if self._call is None:
                self._call = self._client.subscribe(self._position)
            try:
                response = await self._call.read()
            except grpc.aio.AioRpcError as error:
                log.warning("rebuild feed failed: %s; resubscribing", error.code().name)
            else:
                if isinstance(response, event_feed_pb2.SubscribeResponse):
                    return response
                log.warning("rebuild feed ended by the command server; resubscribing")
            self.close()
            await backoff.sleep()

    def close(self) -> None:
        """End the subscription."""
        if self._call is not None:
            self._call.cancel()
        self._call = None


class Rebuilder:
    """Run at most one rebuild at a time and remember the latest."""

    def __init__(
        self,
        store: ReadStore,
        projector: Projector,
        watch: CheckpointWatch,
        client: FeedClient,
        feed_state: FeedState,
    ) -> None:
        """Rebuild `store` through `projector` from the feed of `client`."""
        self._store = store
        self._projector = projector
        self._watch = watch
        self._client = client
        self._feed_state = feed_state
        self._task: asyncio.Task[None] | None = None
        self._dropping: set[asyncio.Task[None]] = set()
        self.latest: RebuildRun | None = None

    def start(self, *, compare_only: bool) -> tuple[RebuildRun, bool]:
        """Start a rebuild; return it, or the running one and True."""
        if self._task is not None and not self._task.done():
            assert self.latest is not None
            return self.latest, True
        run = RebuildRun(
            rebuild_id=uuid.uuid4().hex,
            compare_only=compare_only,
            started_at_us=_now_us(),
            events_at_start=max(self._feed_state.head, self._watch.position),
        )
        self.latest = run
        self._task = asyncio.create_task(self._run(run), name=f"rebuild-{run.rebuild_id}")
        return run, False

    async def stop(self) -> None:
        """Cancel a running rebuild (its generation is dropped now or at the next start)."""
        tasks = [t for t in (self._task, *self._dropping) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, run: RebuildRun) -> None:
        generation = await self._store.create_generation()
        source = _Source(self._client)
        keep = False
        try:
            log.info("rebuild started", extra={"rebuild_id": run.rebuild_id, "gen": generation})
            await self._replay(run, generation, source)
            keep = await self._finish(run, generation, source)
            run.state = pb.REBUILD_STATE_COMPLETED
        except Exception as error:
            log.exception("rebuild failed", extra={"rebuild_id": run.rebuild_id})
            run.state = pb.REBUILD_STATE_FAILED
            run.error_message = f"{type(error).__name__}: {error}"[:500]
        finally:
            source.close()
            run.finished_at_us = _now_us()
            with contextlib.suppress(Exception):
                await self._projector.flush(generation)  # Its failure is the rebuild's, above.
            if not keep:
                self._drop_later(generation, 0)
        log.info(
            "rebuild finished",
            extra={"rebuild_id": run.rebuild_id, "events": run.events_applied},
        )

    async def _replay(self, run: RebuildRun, generation: int, source: _Source) -> None:
        """Apply the log until the rebuild is within one batch of the live checkpoint."""
        while run.progress + limits.projection_batch_events_max < self._watch.position or (
            run.progress < run.events_at_start
        ):
            events = await source.take(None)
            if events:
                # Each batch is written while the next is read and projected.
                run.progress = await self._projector.apply_to(
                    generation, events, run.progress, then_more=True
                )
                run.events_applied += len(events)
        await self._projector.flush(generation)

    async def _finish(self, run: RebuildRun, generation: int, source: _Source) -> bool:
        """Catch up exactly with the live checkpoint under the lock; switch or compare."""
        while True:
            async with self._projector.paused():
                live = self._watch.position
                while run.progress < live:
                    events = await source.take(live)
                    if events:
                        run.progress = await self._projector.apply_to(
                            generation, events, run.progress
                        )
                        run.events_applied += len(events)
                if run.progress == live:
                    if run.compare_only:
                        run.mismatch_count = await self._store.count_differences(generation)
                        return False
                    previous = await self._store.activate_generation(generation)
                    self._drop_later(previous, limits.retired_generation_keep_ms)
                    return True
            # The rebuild is ahead of the live projection: let it catch up, then try again.
            while self._watch.position < run.progress:
                if self._watch.closed:
                    raise ShuttingDown
                await self._watch.armed().wait()

    def _drop_later(self, generation: int, delay_ms: int) -> None:
        async def drop() -> None:
            await asyncio.sleep(delay_ms / 1000)
            try:
                await self._store.drop_generation(generation)
            except Exception:
                log.warning("could not drop read-store generation %d", generation, exc_info=True)

        task = asyncio.create_task(drop(), name=f"drop-generation-{generation}")
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)
