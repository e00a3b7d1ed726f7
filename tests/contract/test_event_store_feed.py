"""Contract of every event store's feed: catch-up then live, exactly once, no gap.

The held-open and rolled-back transaction tests are the "skipped event" cases of
``research/reliability.md`` (tests 6 and 7): they run on PostgreSQL with separate
connections, and on SQLite with separate connections to one file.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from pointex.server.eventstore.port import (
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)

MakeStore = Callable[..., EventStore]
RawSql = Callable[[str], Awaitable[str | None]]
WAIT_S = 10
# Long enough for a blocked writer or a stray delivery to show itself.
SETTLE_S = 0.3

INSERT_COPY_OF_FIRST = """
INSERT INTO events (
    position, stream_id, stream_version, slice, category, type, schema_version,
    data, metadata, recorded_at_us
)
SELECT {position}, stream_id, stream_version + 1000, slice, category, type, schema_version,
    data, metadata, recorded_at_us
FROM events WHERE position = 1
"""


def new_stream_id(category: str = "account") -> str:
    """Return a random stream id of a category, so tests never share a stream."""
    return f"{category}-{secrets.token_hex(4)}"


def one_event(label: str) -> tuple[NewEvent, ...]:
    """Return one new event labelled in its data."""
    return (NewEvent("PointsIssued", 1, label.encode()),)


class Subscriber:
    """Consume a feed in a task of its own, so that a test can wait for a count."""

    def __init__(self, feed: AsyncIterator[RecordedEvent]) -> None:
        """Start consuming ``feed`` at once."""
        self.received: list[RecordedEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._consume(feed))

    async def _consume(self, feed: AsyncIterator[RecordedEvent]) -> None:
        try:
            async for event in feed:
                self.received.append(event)
                self._changed.set()
        finally:
            self._changed.set()

    async def until(self, count: int) -> None:
        """Wait until ``count`` events arrived; raise what the feed raised, if it did."""
        async with asyncio.timeout(WAIT_S):
            while len(self.received) < count:
                if self._task.done():
                    self._task.result()
                    raise AssertionError("the feed ended")
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        """Cancel the consuming task and wait for it to end."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def opened(make_store: MakeStore, **options: object) -> EventStore:
    """Build and open one more store on the test's database."""
    new_store = make_store(**options)
    await new_store.open()
    return new_store


async def test_subscribe_catches_up_then_delivers_live_events(store: EventStore) -> None:
    """Subscribe from 0 after three events: receive them, then one appended afterwards."""
    stream_id = new_stream_id()
    await store.append([StreamAppend(stream_id, 0, one_event("a") * 3)])
    subscriber = Subscriber(store.subscribe(0))
    try:
        await subscriber.until(3)
        await store.append([StreamAppend(stream_id, 3, one_event("live"))])
        await subscriber.until(4)
        await asyncio.sleep(SETTLE_S)
    finally:
        await subscriber.stop()
    assert [event.position for event in subscriber.received] == [1, 2, 3, 4]
    assert subscriber.received[-1].data == b"live"
    assert subscriber.received == await store.read_all(0, 100)


async def test_subscribe_from_a_middle_position_starts_right_after_it(store: EventStore) -> None:
    """Subscribe after position 4 of 10: receive 5..10, then the next live event, 11."""
    stream_id = new_stream_id()
    await store.append([StreamAppend(stream_id, 0, one_event("x") * 10)])
    subscriber = Subscriber(store.subscribe(4))
    try:
        await subscriber.until(6)
        await store.append([StreamAppend(new_stream_id(), 0, one_event("live"))])
        await subscriber.until(7)
    finally:
        await subscriber.stop()
    assert [event.position for event in subscriber.received] == list(range(5, 12))


async def test_subscribe_from_the_head_waits_for_the_next_commit(store: EventStore) -> None:
    """A subscriber at the head receives nothing until an append, then exactly that one."""
    await store.append([StreamAppend(new_stream_id(), 0, one_event("old"))])
    subscriber = Subscriber(store.subscribe(1))
    try:
        await asyncio.sleep(SETTLE_S)
        assert subscriber.received == []
        await store.append([StreamAppend(new_stream_id(), 0, one_event("new"))])
        await subscriber.until(1)
    finally:
        await subscriber.stop()
    assert [(event.position, event.data) for event in subscriber.received] == [(2, b"new")]


async def test_subscriber_of_one_store_sees_appends_made_through_another(
    store: EventStore, make_store: MakeStore
) -> None:
    """Appends through a second store (another process's connection) reach the subscriber."""
    other = await opened(make_store)
    subscriber = Subscriber(store.subscribe(0))
    try:
        for index in range(3):
            await other.append([StreamAppend(new_stream_id(), 0, one_event(str(index)))])
            await subscriber.until(index + 1)
    finally:
        await subscriber.stop()
    assert [event.position for event in subscriber.received] == [1, 2, 3]


async def _append_until_done(writer: EventStore, streams: list[str], appends: int) -> None:
    """Append ``appends`` times to random shared streams, re-reading after each conflict."""
    rng = random.Random(secrets.randbits(32))
    done = 0
    for _ in range(appends * 20):
        if done == appends:
            return
        stream_id = rng.choice(streams)
        version = await writer.stream_version(stream_id)
        events = one_event(f"{stream_id}:{version + 1}") * rng.randint(1, 3)
        try:
            await writer.append([StreamAppend(stream_id, version, events)])
        except WrongExpectedVersion:
            continue
        done += 1
    raise AssertionError(f"only {done} of {appends} appends landed")


async def test_concurrent_appenders_reach_a_subscriber_gap_free_exactly_once_in_order(
    store: EventStore, make_store: MakeStore
) -> None:
    """Eight tasks on four stores append 50 times each to shared streams, racing.

    A subscriber running throughout sees positions exactly 1..N, each once, in order, equal
    to read_all, with every stream's versions 1..k in order.
    """
    writers = [store, *[await opened(make_store) for _ in range(3)]]
    streams = [new_stream_id() for _ in range(12)]
    subscriber = Subscriber(store.subscribe(0))
    try:
        await asyncio.gather(
            *(_append_until_done(writers[index % 4], streams, 50) for index in range(8))
        )
        head = await store.head_position()
        await subscriber.until(head)
        await asyncio.sleep(SETTLE_S)
    finally:
        await subscriber.stop()
    assert [event.position for event in subscriber.received] == list(range(1, head + 1))
    everything = [
        event for after in range(0, head, 1000) for event in await store.read_all(after, 1000)
    ]
    assert subscriber.received == everything
    for stream_id in streams:
        versions = [
            event.stream_version for event in subscriber.received if event.stream_id == stream_id
        ]
        assert versions == list(range(1, len(versions) + 1))


class _Holder:
    """A before-commit hook that holds writer A's transaction open until released."""

    def __init__(self, *, roll_back: bool) -> None:
        self.in_commit = asyncio.Event()
        self.release = asyncio.Event()
        self.roll_back = roll_back

    async def __call__(self, _events: Sequence[RecordedEvent]) -> None:
        self.in_commit.set()
        await self.release.wait()
        if self.roll_back:
            raise _WriterAGaveUpError


class _WriterAGaveUpError(Exception):
    """Raised by writer A's hook so that its transaction rolls back."""


async def _hold_a_then_append_b(
    store: EventStore, make_store: MakeStore, holder: _Holder
) -> tuple[asyncio.Task[list[RecordedEvent]], asyncio.Task[list[RecordedEvent]]]:
    """Start writer A (held before COMMIT), then writer B; return both append tasks."""
    writer_a = await opened(make_store, before_commit=holder)
    writer_b = await opened(make_store)
    task_a = asyncio.create_task(
        writer_a.append([StreamAppend(new_stream_id(), 0, one_event("A"))])
    )
    async with asyncio.timeout(WAIT_S):
        await holder.in_commit.wait()
    task_b = asyncio.create_task(
        writer_b.append([StreamAppend(new_stream_id(), 0, one_event("B"))])
    )
    await asyncio.sleep(SETTLE_S)
    assert not task_b.done(), "B committed while A held the position"
    assert await store.head_position() == 1
    return task_a, task_b


async def test_writer_held_before_commit_keeps_later_writers_and_the_feed_in_order(
    store: EventStore, make_store: MakeStore
) -> None:
    """A holds its append open before COMMIT; B appends meanwhile; a subscriber is live.

    B cannot commit before A, the subscriber receives nothing until A commits, then A's
    event and B's, each once, gap-free.
    """
    await store.append([StreamAppend(new_stream_id(), 0, one_event("first"))])
    subscriber = Subscriber(store.subscribe(1))
    holder = _Holder(roll_back=False)
    try:
        task_a, task_b = await _hold_a_then_append_b(store, make_store, holder)
        assert subscriber.received == []
        holder.release.set()
        async with asyncio.timeout(WAIT_S):
            written_a, written_b = await asyncio.gather(task_a, task_b)
        assert [event.position for event in written_a + written_b] == [2, 3]
        await subscriber.until(2)
        await asyncio.sleep(SETTLE_S)
    finally:
        await subscriber.stop()
    assert [(event.position, event.data) for event in subscriber.received] == [(2, b"A"), (3, b"B")]


async def test_writer_rolled_back_before_commit_leaves_no_gap_and_the_feed_moves_on(
    store: EventStore, make_store: MakeStore
) -> None:
    """A holds its append open, then rolls back; B's event takes the next position.

    The subscriber receives B's event (no gap, no stall) and never A's.
    """
    await store.append([StreamAppend(new_stream_id(), 0, one_event("first"))])
    subscriber = Subscriber(store.subscribe(1))
    holder = _Holder(roll_back=True)
    try:
        task_a, task_b = await _hold_a_then_append_b(store, make_store, holder)
        holder.release.set()
        async with asyncio.timeout(WAIT_S):
            outcome_a, written_b = await asyncio.gather(task_a, task_b, return_exceptions=True)
        assert isinstance(outcome_a, _WriterAGaveUpError)
        assert isinstance(written_b, list)
        assert [event.position for event in written_b] == [2]
        await subscriber.until(1)
        await asyncio.sleep(SETTLE_S)
    finally:
        await subscriber.stop()
    assert [(event.position, event.data) for event in subscriber.received] == [(2, b"B")]
    assert [event.position for event in await store.read_all(0, 10)] == [1, 2]


async def test_raw_insert_while_a_writer_holds_the_position_is_refused(
    store: EventStore, make_store: MakeStore, raw_sql: RawSql
) -> None:
    """While A holds position 2 before COMMIT, a raw insert at position 3 is refused.

    The database itself makes commit order equal position order: nobody may insert a
    higher position while a lower one is uncommitted.
    """
    await store.append([StreamAppend(new_stream_id(), 0, one_event("first"))])
    holder = _Holder(roll_back=False)
    writer_a = await opened(make_store, before_commit=holder)
    task_a = asyncio.create_task(
        writer_a.append([StreamAppend(new_stream_id(), 0, one_event("A"))])
    )
    try:
        async with asyncio.timeout(WAIT_S):
            await holder.in_commit.wait()
        error = await raw_sql(INSERT_COPY_OF_FIRST.format(position=3))
        assert error is not None
    finally:
        holder.release.set()
        async with asyncio.timeout(WAIT_S):
            await task_a
    assert [event.data for event in await store.read_all(0, 10)] == [b"first", b"A"]
