"""EventFeed: the committed log, catch-up then live, in position order, with heartbeats.

A pump task follows the store (`EventStore.subscribe`, which reads page by page) into a
bounded queue; the call drains it into batches and writes them with `context.write`,
which waits for HTTP/2 flow control. A subscriber that reads slowly therefore holds the
pump back and costs at most `feed_buffer_events_max` events plus one store page.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import grpc
from google.protobuf import timestamp_pb2

from pointex.client.positions import decode_global, position_message
from pointex.server import limits
from pointex.server.eventstore.port import (
    EventStore,
    RecordedEvent,
    StoreError,
    stream_category,
)
from pointex.server.grpc_edge.status import InvalidRequest, ShuttingDown
from pointex.v1 import event_feed_pb2, event_feed_pb2_grpc, events_pb2

_CATEGORY = re.compile(r"[a-z]{1,32}")

# Stable event type name -> the field of Event.payload that carries it.
_PAYLOAD_FIELDS: dict[str, str] = {
    field.message_type.name: field.name
    for field in events_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"].fields
    if field.message_type is not None
}

Context = grpc.aio.ServicerContext[
    event_feed_pb2.SubscribeRequest, event_feed_pb2.SubscribeResponse
]


def to_wire(event: RecordedEvent) -> events_pb2.Event:
    """Return the wire form of a recorded event; its payload is parsed by stable type name."""
    recorded_at = timestamp_pb2.Timestamp()
    recorded_at.FromMicroseconds(event.recorded_at_us)
    wire = events_pb2.Event(
        position=position_message(event.position),
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        slice=event.slice,
        type=event.type,
        schema_version=event.schema_version,
        recorded_at=recorded_at,
    )
    field = _PAYLOAD_FIELDS.get(event.type)
    if field is not None:
        getattr(wire, field).MergeFromString(event.data)
    return wire


def _validate(request: event_feed_pb2.SubscribeRequest) -> tuple[int, frozenset[str], int]:
    after = decode_global(request.from_position.token)
    if len(request.categories) > limits.feed_filter_categories_max:
        raise InvalidRequest(
            "INVALID_FIELD", "categories", f"at most {limits.feed_filter_categories_max}"
        )
    for category in request.categories:
        if not _CATEGORY.fullmatch(category):
            raise InvalidRequest("INVALID_FIELD", "categories", "1-32 characters of [a-z]")
    if request.max_batch_size > limits.feed_batch_events_max:
        raise InvalidRequest(
            "PAGE_SIZE_TOO_LARGE", "max_batch_size", f"at most {limits.feed_batch_events_max}"
        )
    return (
        after,
        frozenset(request.categories),
        request.max_batch_size or limits.feed_batch_events_default,
    )


# What the pump hands the call: an event, or the error that ends the call.
_Item = RecordedEvent | StoreError | ShuttingDown


class EventFeedServicer(event_feed_pb2_grpc.EventFeedServicer):
    """Serve `EventFeed.Subscribe` from one event store."""

    def __init__(self, store: EventStore) -> None:
        """Serve the log of `store`."""
        self._store = store
        self._queues: set[asyncio.Queue[_Item]] = set()
        self._stopping = False

    def stop_streams(self) -> None:
        """End every subscription now with UNAVAILABLE / SHUTTING_DOWN, and refuse new ones.

        Called when the server starts draining: a subscription never ends by itself, so it
        would otherwise hold the whole grace period. Subscribers resume from their last
        resume_position elsewhere or after the restart; the events dropped from a buffer
        here are sent again then.
        """
        self._stopping = True
        for queue in self._queues:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(ShuttingDown("the command server is shutting down"))

    async def Subscribe(
        self, request: event_feed_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[event_feed_pb2.SubscribeResponse]:
        """Stream every committed event after `from_position`, then heartbeats when idle."""
        after, categories, batch_max = _validate(request)
        if self._stopping:
            raise ShuttingDown("the command server is shutting down")
        # Headers now rather than with the first batch: a subscriber learns at once that it is
        # connected and authorised, even on an idle log (its health depends on it).
        await context.send_initial_metadata(())
        queue: asyncio.Queue[_Item] = asyncio.Queue(limits.feed_buffer_events_max)
        self._queues.add(queue)
        pump = asyncio.create_task(self._pump(after, queue), name="feed-pump")
        try:
            async for response in self._responses(after, categories, batch_max, queue):
                yield response
        finally:
            self._queues.discard(queue)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, after: int, queue: asyncio.Queue[_Item]) -> None:
        try:
            async for event in self._store.subscribe(after):
                await queue.put(event)
        except StoreError as error:
            # Handed to the call, which ends with UNAVAILABLE; the subscriber resumes later.
            await queue.put(error)

    async def _responses(
        self,
        after: int,
        categories: frozenset[str],
        batch_max: int,
        queue: asyncio.Queue[_Item],
    ) -> AsyncIterator[event_feed_pb2.SubscribeResponse]:
        served = after
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races its timeout, leaving the call running.
                async with asyncio.timeout(limits.feed_heartbeat_ms / 1000):
                    item = await queue.get()
            except TimeoutError:
                head = await self._store.head_position()
                yield _heartbeat(max(head, served))
                continue
            events: list[RecordedEvent] = []
            while True:
                if isinstance(item, Exception):
                    raise item  # A store error or the shutdown: the call ends with it.
                events.append(item)
                if len(events) == batch_max or queue.empty():
                    break
                item = queue.get_nowait()
            served = events[-1].position
            wanted = [
                e for e in events if not categories or stream_category(e.stream_id) in categories
            ]
            # Caught up when the queue is empty: the last event is the head as far as we know.
            head = served if queue.empty() else await self._store.head_position()
            yield event_feed_pb2.SubscribeResponse(
                events=event_feed_pb2.EventBatch(
                    events=[to_wire(e) for e in wanted],
                    resume_position=position_message(served),
                    head=position_message(max(head, served)),
                )
            )


def _heartbeat(head: int) -> event_feed_pb2.SubscribeResponse:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return event_feed_pb2.SubscribeResponse(
        heartbeat=event_feed_pb2.Heartbeat(head=position_message(head), server_time=now)
    )
