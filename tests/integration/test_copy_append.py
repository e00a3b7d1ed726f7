"""Large group commits on PostgreSQL send their rows by binary COPY, under the same rules.

A batch of at least `limits.append_copy_events_min` events goes as the same transaction as
any other (the position lock, then the head and the versions read under it), but its rows
go by COPY instead of an INSERT of array columns. These tests check that such batches take
that path and smaller ones do not, that a stale or unreached expected version is reported in
its slot while the rest commit, that a writer holding the position lock is waited for, that
two writers' large batches interleave gap-free, and that the database's insert guard holds
COPY to the lock and to gap-free positions as it holds INSERT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from pointex.server import limits
from pointex.server.eventstore.port import (
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from pointex.server.eventstore.postgres import appender, sql
from pointex.server.eventstore.postgres.appender import POSITION_LOCK_KEY
from pointex.server.eventstore.postgres.store import PostgresEventStore

EVENT = NewEvent("Counted", 1, b"{}", b"\x00meta")
EVENTS_PER_APPEND = 4
# Enough appends of EVENTS_PER_APPEND events for a batch to go by COPY.
LARGE_UNITS = limits.append_copy_events_min // EVENTS_PER_APPEND + 1
LOCK_WAIT_S = 0.3
BATCHES_PER_WRITER = 5


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the batches sent by COPY (their rows, one entry a batch)."""
    counted: list[int] = []
    records = appender.copy_records

    def count(rows: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
        counted.append(len(rows))
        return records(rows)

    monkeypatch.setattr(appender, "copy_records", count)
    return counted


@pytest.fixture
async def writers(pg_dsn: str, pg_schema: str) -> AsyncIterator[tuple[PostgresEventStore, ...]]:
    """Two stores on one schema, as two command servers would be."""
    stores = [PostgresEventStore(pg_dsn, schema=pg_schema) for _ in range(2)]
    for store in stores:
        await store.open()
    yield tuple(stores)
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


def assert_gap_free(log: Sequence[RecordedEvent]) -> None:
    """Assert that the log's positions run from 1 without a gap."""
    assert [event.position for event in log] == list(range(1, len(log) + 1))


async def test_a_large_batch_goes_by_copy_and_is_stored_as_reported(
    writers: tuple[PostgresEventStore, ...], copies: list[int]
) -> None:
    """Large batches take COPY, each with one clock; the events reported are those stored."""
    writer, _ = writers
    reported: list[RecordedEvent] = []
    for version in range(0, 3 * EVENTS_PER_APPEND, EVENTS_PER_APPEND):
        results = await writer.append_batch(large_batch("acct", version))
        batch = [event for result in results if isinstance(result, list) for event in result]
        assert len(batch) == LARGE_UNITS * EVENTS_PER_APPEND
        assert len({event.recorded_at_us for event in batch}) == 1
        reported.extend(batch)
    assert copies == [LARGE_UNITS * EVENTS_PER_APPEND] * 3
    log = await whole_log(writer)
    assert_gap_free(log)
    assert log == reported
    assert {(event.data, event.metadata) for event in log} == {(EVENT.data, EVENT.metadata)}
    assert {event.stream_id.partition("-")[0] for event in log} == {"acct"}


async def test_a_small_batch_is_inserted_without_copy(
    writers: tuple[PostgresEventStore, ...], copies: list[int]
) -> None:
    """Below the bound, a batch's rows go by INSERT."""
    writer, _ = writers
    await writer.append([StreamAppend("acct-0", 0, (EVENT,) * EVENTS_PER_APPEND)])
    assert copies == []
    assert_gap_free(await whole_log(writer))


async def test_a_stale_expected_version_is_reported_in_its_slot(
    writers: tuple[PostgresEventStore, ...], copies: list[int]
) -> None:
    """One unit expects a version its stream has passed: it alone fails, the rest go by COPY."""
    writer, other = writers
    await writer.append_batch(large_batch("acct", 0))
    await other.append([StreamAppend("acct-3", EVENTS_PER_APPEND, (EVENT,))])
    results = await writer.append_batch(large_batch("acct", EVENTS_PER_APPEND))
    conflict = results[3]
    assert isinstance(conflict, WrongExpectedVersion)
    assert (conflict.stream_id, conflict.expected_version) == ("acct-3", EVENTS_PER_APPEND)
    assert conflict.actual_version == EVENTS_PER_APPEND + 1
    assert all(isinstance(result, list) for i, result in enumerate(results) if i != 3)
    assert copies == [LARGE_UNITS * EVENTS_PER_APPEND, (LARGE_UNITS - 1) * EVENTS_PER_APPEND]
    assert_gap_free(await whole_log(writer))


async def test_a_version_the_stream_has_not_reached_is_refused_not_skipped_to(
    writers: tuple[PostgresEventStore, ...],
) -> None:
    """A unit expecting a later version than its stream's: no version gap, a conflict."""
    writer, _ = writers
    await writer.append_batch(large_batch("acct", 0))
    batch = large_batch("acct", EVENTS_PER_APPEND)
    batch[2] = [StreamAppend("acct-2", 3 * EVENTS_PER_APPEND, (EVENT,) * EVENTS_PER_APPEND)]
    results = await writer.append_batch(batch)
    conflict = results[2]
    assert isinstance(conflict, WrongExpectedVersion)
    assert (conflict.expected_version, conflict.actual_version) == (
        3 * EVENTS_PER_APPEND,
        EVENTS_PER_APPEND,
    )
    versions = [e.stream_version for e in await whole_log(writer) if e.stream_id == "acct-2"]
    assert versions == list(range(1, EVENTS_PER_APPEND + 1))


async def test_a_writer_holding_the_position_lock_is_waited_for(
    writers: tuple[PostgresEventStore, ...], pg_dsn: str, pg_schema: str
) -> None:
    """A transaction holding the lock: the batch waits for it, then lands after its rows."""
    writer, _ = writers
    await writer.append_batch(large_batch("acct", 0))
    holder = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", POSITION_LOCK_KEY)
        append = asyncio.create_task(writer.append_batch(large_batch("acct", EVENTS_PER_APPEND)))
        await asyncio.sleep(LOCK_WAIT_S)
        assert not append.done(), "the batch landed while another transaction held the lock"
        await transaction.commit()
        results = await asyncio.wait_for(append, 10)
    finally:
        await holder.close()
    assert all(isinstance(result, list) for result in results)
    assert_gap_free(await whole_log(writer))


async def test_two_writers_large_batches_interleave_gap_free_in_commit_order(
    writers: tuple[PostgresEventStore, ...],
) -> None:
    """Two stores append large batches at once: every batch lands whole, one after another."""

    async def write(store: PostgresEventStore, prefix: str) -> list[list[RecordedEvent]]:
        batches = []
        for n in range(BATCHES_PER_WRITER):
            results = await store.append_batch(large_batch(prefix, n * EVENTS_PER_APPEND))
            batch = [event for result in results if isinstance(result, list) for event in result]
            assert len(batch) == LARGE_UNITS * EVENTS_PER_APPEND
            batches.append(batch)
        return batches

    first, second = await asyncio.gather(write(writers[0], "a"), write(writers[1], "b"))
    log = await whole_log(writers[0])
    assert_gap_free(log)
    # Each batch holds a run of consecutive positions: no batch was interleaved with another.
    for batch in first + second:
        positions = [event.position for event in batch]
        assert positions == list(range(positions[0], positions[0] + len(positions)))
    assert len(log) == 2 * BATCHES_PER_WRITER * LARGE_UNITS * EVENTS_PER_APPEND


async def test_the_insert_guard_holds_copy_to_the_lock_and_to_gap_free_positions(
    writers: tuple[PostgresEventStore, ...], pg_dsn: str, pg_schema: str
) -> None:
    """A raw COPY is refused without the lock, or with it at a position past head + 1."""
    writer, _ = writers
    await writer.append_batch(large_batch("acct", 0))
    head = await writer.head_position()
    row: tuple[Any, ...] = (0, "acct-x", 1, 0, "Counted", 1, b"", b"", 0, "acct")
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    holder = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", POSITION_LOCK_KEY)
        with pytest.raises(asyncpg.LockNotAvailableError):
            await connection.copy_records_to_table(
                "events", columns=sql.COPY_COLUMNS, records=[(head + 1, *row[1:])]
            )
        await holding.rollback()
        locked = connection.transaction()
        await locked.start()
        await connection.execute("SELECT pg_advisory_xact_lock($1)", POSITION_LOCK_KEY)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="without a gap"):
            await connection.copy_records_to_table(
                "events", columns=sql.COPY_COLUMNS, records=[(head + 2, *row[1:])]
            )
        await locked.rollback()
    finally:
        await connection.close()
        await holder.close()
    assert await writer.head_position() == head
