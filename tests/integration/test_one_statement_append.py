"""Large group commits on PostgreSQL go as one call of `append_events`, planned on versions.

A batch of at least `limits.append_one_statement_events_min` events is planned on the
versions its units expect and sent as one call (migration 0002), which waits for the
position lock in the database and writes nothing unless every stream's version is what the
plan assumed. These tests check that such batches take that path whatever other writers do,
that a version that does not hold sends the batch through the locked transaction with the
same outcome, that calls in flight together from one store land in order after the lock's
holder, and that the log stays gap-free throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from pointex.server import limits
from pointex.server.eventstore.planning import BatchPlan
from pointex.server.eventstore.port import (
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from pointex.server.eventstore.postgres.store import PostgresEventStore
from tests.integration.by_hand import insert_holding_the_lock

EVENT = NewEvent("Counted", 1, b"{}")
EVENTS_PER_APPEND = 4
# Enough appends of EVENTS_PER_APPEND events for a batch to go as one statement.
LARGE_UNITS = limits.append_one_statement_events_min // EVENTS_PER_APPEND + 1
LOCK_WAIT_S = 0.3


class Counted:
    """A store whose appends are counted by the path they took."""

    def __init__(self, store: PostgresEventStore) -> None:
        """Count the appends of `store` from now on."""
        self.store = store
        self.locked = 0
        self.one_statement = 0
        locked, one_statement = store._appender._write_locked, store._appender._append_expected

        async def count_locked(units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
            self.locked += 1
            return await locked(units)

        async def count_one(units: Sequence[Sequence[StreamAppend]]) -> BatchPlan | None:
            plan = await one_statement(units)
            self.one_statement += plan is not None
            return plan

        store._appender._write_locked = count_locked  # type: ignore[method-assign]
        store._appender._append_expected = count_one  # type: ignore[method-assign]


@pytest.fixture
async def writers(pg_dsn: str, pg_schema: str) -> AsyncIterator[tuple[Counted, Counted]]:
    """Two stores on one schema, as two command servers would be."""
    stores = [PostgresEventStore(pg_dsn, schema=pg_schema) for _ in range(2)]
    for store in stores:
        await store.open()
    yield Counted(stores[0]), Counted(stores[1])
    for store in stores:
        await store.close()


def large_batch(prefix: str, version: int) -> list[list[StreamAppend]]:
    """Return one unit per stream `prefix-i`, each expecting `version`."""
    return [
        [StreamAppend(f"{prefix}-{i}", version, (EVENT,) * EVENTS_PER_APPEND)]
        for i in range(LARGE_UNITS)
    ]


async def whole_log(store: PostgresEventStore) -> list[RecordedEvent]:
    """Return every event, in position order."""
    log: list[RecordedEvent] = []
    while page := await store.read_all(log[-1].position if log else 0, 1000):
        log.extend(page)
    return log


async def test_every_large_batch_goes_as_one_call(
    writers: tuple[Counted, Counted],
) -> None:
    """From the first batch on, a large batch takes one call; it reports what it wrote."""
    writer, _ = writers
    for version in range(0, 4 * EVENTS_PER_APPEND, EVENTS_PER_APPEND):
        results = await writer.store.append_batch(large_batch("acct", version))
        assert all(isinstance(result, list) for result in results)
    assert (writer.locked, writer.one_statement) == (0, 4)
    log = await whole_log(writer.store)
    assert [event.position for event in log] == list(range(1, len(log) + 1))
    assert len(log) == 4 * LARGE_UNITS * EVENTS_PER_APPEND
    # Every event carries the clock of its call, and the store reports what it wrote.
    last = await writer.store.append_batch(large_batch("acct", 4 * EVENTS_PER_APPEND))
    reported = [event for result in last if isinstance(result, list) for event in result]
    assert reported == await writer.store.read_all(len(log), 1000)
    assert len({event.recorded_at_us for event in reported}) == 1


async def test_a_small_batch_takes_the_locked_transaction(
    writers: tuple[Counted, Counted],
) -> None:
    """Below the bound, a batch goes as a transaction."""
    writer, _ = writers
    await writer.store.append_batch(large_batch("acct", 0))
    await writer.store.append([StreamAppend("acct-0", EVENTS_PER_APPEND, (EVENT,))])
    assert (writer.locked, writer.one_statement) == (1, 1)


async def test_another_writers_rows_do_not_stop_the_call(
    writers: tuple[Counted, Counted],
) -> None:
    """Two stores on one schema, batches interleaved: each call lands after the other's rows."""
    first, second = writers
    for version in range(0, 3 * EVENTS_PER_APPEND, EVENTS_PER_APPEND):
        await first.store.append_batch(large_batch("a", version))
        await second.store.append_batch(large_batch("b", version))
    assert (first.locked, first.one_statement) == (0, 3)
    assert (second.locked, second.one_statement) == (0, 3)
    log = await whole_log(first.store)
    assert [event.position for event in log] == list(range(1, len(log) + 1))
    assert [event.stream_id[0] for event in log[:: LARGE_UNITS * EVENTS_PER_APPEND]] == [
        "a", "b", "a", "b", "a", "b"
    ]  # fmt: skip


async def test_a_stale_expected_version_is_reported_in_its_slot(
    writers: tuple[Counted, Counted],
) -> None:
    """One unit expects a version its stream has passed: it alone fails, as under the lock."""
    writer, other = writers
    await writer.store.append_batch(large_batch("acct", 0))
    await other.store.append([StreamAppend("acct-3", EVENTS_PER_APPEND, (EVENT,))])
    # A small append of this store, as before the conflicting batch.
    await writer.store.append([StreamAppend("acct-0", EVENTS_PER_APPEND, (EVENT,))])
    batch = large_batch("acct", EVENTS_PER_APPEND)
    batch[0] = [StreamAppend("acct-0", EVENTS_PER_APPEND + 1, (EVENT,) * EVENTS_PER_APPEND)]
    results = await writer.store.append_batch(batch)
    conflict = results[3]
    assert isinstance(conflict, WrongExpectedVersion)
    assert (conflict.stream_id, conflict.expected_version) == ("acct-3", EVENTS_PER_APPEND)
    assert conflict.actual_version == EVENTS_PER_APPEND + 1
    assert all(isinstance(result, list) for i, result in enumerate(results) if i != 3)
    # Only the first batch went as one call: this one's call found the version, wrote nothing.
    assert (writer.locked, writer.one_statement) == (2, 1)
    log = await whole_log(writer.store)
    assert [event.position for event in log] == list(range(1, len(log) + 1))


async def test_a_version_the_stream_has_not_reached_is_refused_not_skipped_to(
    writers: tuple[Counted, Counted],
) -> None:
    """A unit expecting a later version than its stream's: no version gap, a conflict."""
    writer, _ = writers
    await writer.store.append_batch(large_batch("acct", 0))
    batch = large_batch("acct", EVENTS_PER_APPEND)
    batch[2] = [StreamAppend("acct-2", 3 * EVENTS_PER_APPEND, (EVENT,) * EVENTS_PER_APPEND)]
    results = await writer.store.append_batch(batch)
    conflict = results[2]
    assert isinstance(conflict, WrongExpectedVersion)
    assert (conflict.expected_version, conflict.actual_version) == (
        3 * EVENTS_PER_APPEND,
        EVENTS_PER_APPEND,
    )
    assert (writer.locked, writer.one_statement) == (1, 1)  # The second batch's call: nothing.
    versions = [e.stream_version for e in await whole_log(writer.store) if e.stream_id == "acct-2"]
    assert versions == list(range(1, EVENTS_PER_APPEND + 1))


async def test_calls_in_flight_together_wait_for_the_lock_and_land_in_order(
    writers: tuple[Counted, Counted], pg_dsn: str, pg_schema: str
) -> None:
    """Two calls wait for a transaction holding the lock, then land after its rows, in order.

    The second call expects the versions the first one writes, as a batch sent while an
    earlier one commits would.
    """
    writer, _ = writers
    await writer.store.append_batch(large_batch("acct", 0))
    holder = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        transaction = holder.transaction()
        await transaction.start()
        await insert_holding_the_lock(holder, "other-1")
        first = asyncio.create_task(
            writer.store.append_batch(large_batch("acct", EVENTS_PER_APPEND))
        )
        await asyncio.sleep(LOCK_WAIT_S)  # The first call waits for the lock in the database.
        second = asyncio.create_task(
            writer.store.append_batch(large_batch("acct", 2 * EVENTS_PER_APPEND))
        )
        await asyncio.sleep(LOCK_WAIT_S)
        assert not first.done(), "a call landed while the lock was held"
        assert not second.done(), "a call landed while the lock was held"
        await transaction.commit()
        results = [*await asyncio.wait_for(first, 10), *await asyncio.wait_for(second, 10)]
    finally:
        await holder.close()
    assert all(isinstance(result, list) for result in results)
    assert (writer.locked, writer.one_statement) == (0, 3)
    log = await whole_log(writer.store)
    assert [event.position for event in log] == list(range(1, len(log) + 1))
    batch_events = LARGE_UNITS * EVENTS_PER_APPEND
    assert log[batch_events].stream_id == "other-1"  # The holder's row, then both calls'.
    versions = [e.stream_version for e in log if e.stream_id == "acct-0"]
    assert versions == list(range(1, 3 * EVENTS_PER_APPEND + 1))
