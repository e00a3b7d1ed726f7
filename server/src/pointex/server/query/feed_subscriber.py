"""Follow the command server's EventFeed and project what it delivers, for as long as we run.

The subscription starts from the read store's checkpoint (0 only for an empty store) and is
re-made from the checkpoint after every failure: the command server going away, the read
store failing, a projection error. Delays between attempts double from
`feed_reconnect_ms_min` to `feed_reconnect_ms_max` and reset once a message arrives.

Health follows the subscription: NOT_SERVING while it is down, SERVING once the command
server has accepted it (its response headers arrive at once). Heartbeats and batch heads
tell how far behind the head the projections are (`FeedState`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from pointex.client.positions import decode_global, encode_global
from pointex.server import limits
from pointex.server.config import FeedTlsConfig
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.projector import Projector
from pointex.v1 import common_pb2, event_feed_pb2, event_feed_pb2_grpc, events_pb2

log = logging.getLogger(__name__)

HealthReporter = Callable[[bool], Awaitable[None]]
Subscription = grpc.aio.UnaryStreamCall[
    event_feed_pb2.SubscribeRequest, event_feed_pb2.SubscribeResponse
]


@dataclass(slots=True)
class FeedState:
    """What the query server knows of its feed: connected or not, and the last head seen."""

    connected: bool = False
    head: int = 0
    head_seen_at_us: int = 0

    def saw_head(self, head: int) -> None:
        """Record a head from a batch or a heartbeat."""
        self.head = max(self.head, head)
        self.head_seen_at_us = time.time_ns() // 1000


class Backoff:
    """Capped exponential delays with jitter, in integer milliseconds."""

    def __init__(
        self,
        first_ms: int = limits.feed_reconnect_ms_min,
        cap_ms: int = limits.feed_reconnect_ms_max,
    ) -> None:
        """Start at `first_ms`, double per failure, never above `cap_ms`."""
        assert 0 < first_ms <= cap_ms, (first_ms, cap_ms)
        self._first_ms = first_ms
        self._cap_ms = cap_ms
        self._next_ms = first_ms

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self._next_ms = self._first_ms

    async def sleep(self) -> None:
        """Wait the next delay: half of it fixed, half random, so servers do not sync up."""
        delay_ms = self._next_ms // 2 + random.randint(0, self._next_ms // 2)  # noqa: S311
        self._next_ms = min(self._next_ms * 2, self._cap_ms)
        await asyncio.sleep(delay_ms / 1000)


def _channel_options() -> list[tuple[str, int]]:
    # Within what the command server permits (grpc_edge/server.py), or it sends GOAWAY.
    return [
        ("grpc.max_receive_message_length", limits.grpc_message_bytes_max),
        ("grpc.keepalive_time_ms", limits.grpc_keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", limits.grpc_keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class FeedClient:
    """The query server's connection to one command server's EventFeed."""

    def __init__(self, target: str, token: str, tls: FeedTlsConfig | None = None) -> None:
        """Connect lazily to `target` (over TLS with `tls`), presenting `token` on every call."""
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=_channel_options())
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.root_ca_pem,
                private_key=tls.private_key_pem,
                certificate_chain=tls.cert_chain_pem,
            )
            self._channel = grpc.aio.secure_channel(target, credentials, _channel_options())
        self._stub = event_feed_pb2_grpc.EventFeedStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    def subscribe(self, after_position: int) -> Subscription:
        """Start a subscription delivering every event after `after_position`."""
        token = encode_global(after_position) if after_position else b""
        call: Subscription = self._stub.Subscribe(
            event_feed_pb2.SubscribeRequest(
                from_position=common_pb2.Position(token=token),
                max_batch_size=limits.projection_batch_events_max,
            ),
            metadata=self._metadata,
        )
        return call

    async def close(self) -> None:
        """Close the channel and every call on it."""
        await self._channel.close(grace=None)


def head_of(response: event_feed_pb2.SubscribeResponse) -> int:
    """Return the head position a feed message reports."""
    if response.WhichOneof("message") == "events":
        return decode_global(response.events.head.token)
    return decode_global(response.heartbeat.head.token)


# A message read ahead, the error that ended the call, or None for its end.
_Item = event_feed_pb2.SubscribeResponse | grpc.aio.AioRpcError | None


async def _read_ahead(call: Subscription, ahead: asyncio.Queue[_Item]) -> None:
    """Move the call's messages into `ahead` (bounded: a full queue stops the reading)."""
    try:
        async for response in call:
            await ahead.put(response)
    except grpc.aio.AioRpcError as error:
        await ahead.put(error)
        raise
    await ahead.put(None)


class _Batches:
    """Coalesce the messages read ahead into batches of whatever has arrived."""

    def __init__(self, ahead: asyncio.Queue[_Item]) -> None:
        self._ahead = ahead
        self._carried: list[_Item] = []  # a message taken but left for the next batch

    async def next(self) -> tuple[list[events_pb2.Event], int] | None:
        """Return the events of the messages that have arrived, and the head; None at the end.

        Waits for one message, then takes those already waiting while the batch stays within
        `limits.projection_batch_events_max` events.
        """
        item = self._carried.pop() if self._carried else await self._ahead.get()
        events: list[events_pb2.Event] = []
        head = 0
        while True:
            if isinstance(item, grpc.aio.AioRpcError):
                raise item
            if item is None:
                self._carried.append(None)  # Every later call sees the end too.
                return (events, head) if events or head else None
            if events and len(events) + len(item.events.events) > (
                limits.projection_batch_events_max
            ):
                self._carried.append(item)
                return events, head
            events.extend(item.events.events)
            head = max(head, head_of(item))
            if self._ahead.empty():
                return events, head
            item = self._ahead.get_nowait()

    def more_waiting(self) -> bool:
        """Return whether the next batch has begun to arrive (a catch-up, a burst)."""
        return bool(self._carried and self._carried[-1] is not None) or not self._ahead.empty()


class FeedSubscriber:
    """Keep the active projections following the feed, reconnecting as needed."""

    def __init__(
        self,
        client: FeedClient,
        projector: Projector,
        watch: CheckpointWatch,
        state: FeedState,
        report_health: HealthReporter,
    ) -> None:
        """Follow through `client` into `projector`; report connectivity to `report_health`."""
        self._client = client
        self._projector = projector
        self._watch = watch
        self._report_health = report_health
        self._task: asyncio.Task[None] | None = None
        self.state = state

    def start(self) -> None:
        """Start following in the background."""
        assert self._task is None, "start() called twice"
        self._task = asyncio.create_task(self._run(), name="feed-subscriber")

    async def stop(self) -> None:
        """Stop following; a batch being written finishes or rolls back as a whole."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._projector.flush()  # A batch still being written commits or fails.
        await self._client.close()

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._follow(backoff)
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "event feed disconnected: %s %s", error.code().name, error.details() or ""
                )
            except Exception:
                log.exception("projection failed; retrying from the read store's checkpoint")
            await self._set_connected(connected=False)
            await backoff.sleep()
            with contextlib.suppress(Exception):
                # The failed batch may have committed (a COMMIT whose reply was lost).
                await self._projector.resync()

    async def _follow(self, backoff: Backoff) -> None:
        after = self._watch.position
        call = self._client.subscribe(after)
        ahead: asyncio.Queue[_Item] = asyncio.Queue(limits.feed_messages_ahead_max)
        reader = asyncio.create_task(_read_ahead(call, ahead), name="feed-reader")
        try:
            # Response headers come as soon as the command server accepted the subscription.
            await call.initial_metadata()
            if call.done() and await call.code() != grpc.StatusCode.OK:
                await reader  # Raises the call's error (a refused token, a bad position).
            log.info("event feed connected", extra={"from_position": after})
            await self._set_connected(connected=True)
            batches = _Batches(ahead)
            while (batch := await batches.next()) is not None:
                backoff.reset()
                events, head = batch
                if events:
                    # Behind the feed, a batch is written while the next is projected.
                    await self._projector.apply_active(events, then_more=batches.more_waiting())
                self.state.saw_head(head)
        finally:
            call.cancel()
            reader.cancel()
            # wait(), not await: the reader's own outcome is of no interest, and a cancellation
            # of this task arriving meanwhile must propagate, not be taken for the reader's.
            await asyncio.wait([reader])
        # The command server ended the stream without an error: reconnect like any failure.
        log.warning("event feed ended by the command server")

    async def _set_connected(self, *, connected: bool) -> None:
        if self.state.connected != connected:
            self.state.connected = connected
            await self._report_health(connected)
