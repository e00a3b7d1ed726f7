"""Contract of every event store's integrity: append-only, migrations, durability, snapshots.

Raw SQL goes through the backend's own driver (the `raw_sql` fixture), as a careless
operator or a bug elsewhere would, and the database itself must refuse it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

import pytest

from pointex.server.eventstore.port import (
    DurabilityUnsafe,
    EventStore,
    NewEvent,
    SchemaTooNew,
    Snapshot,
    StreamAppend,
)

MakeStore = Callable[..., EventStore]
RawSql = Callable[[str], Awaitable[str | None]]

INSERT_COPY_OF_FIRST = """
INSERT INTO events (
    position, stream_id, stream_version, slice, category, type, schema_version,
    data, metadata, recorded_at_us
)
SELECT {position}, stream_id, {stream_version}, slice, category, type, schema_version,
    data, metadata, recorded_at_us
FROM events WHERE position = 1
"""


def new_stream_id(category: str = "account") -> str:
    """Return a random stream id of a category, so tests never share a stream."""
    return f"{category}-{secrets.token_hex(4)}"


def events(count: int) -> tuple[NewEvent, ...]:
    """Return ``count`` distinct new events."""
    return tuple(NewEvent("PointsIssued", 1, f"data-{index}".encode()) for index in range(count))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = metadata",
        "UPDATE events SET type = 'Forged' WHERE position = 2",
        "DELETE FROM events WHERE position = 3",
        "DELETE FROM events WHERE stream_id <> ''",
        "TRUNCATE",
    ],
)
async def test_update_delete_and_truncate_of_events_fail_and_leave_rows_unchanged(
    store: EventStore, raw_sql: RawSql, truncate_sql: str, statement: str
) -> None:
    """A raw UPDATE, DELETE or TRUNCATE on the events table fails; every row is unchanged."""
    await store.append([StreamAppend(new_stream_id(), 0, events(3))])
    before = await store.read_all(0, 100)
    error = await raw_sql(truncate_sql if statement == "TRUNCATE" else statement)
    assert error is not None
    assert "append-only" in error
    assert await store.read_all(0, 100) == before


async def test_raw_insert_leaving_a_position_gap_is_refused(
    store: EventStore, raw_sql: RawSql
) -> None:
    """Inserting position head+2 (skipping head+1) fails: positions stay gap-free."""
    await store.append([StreamAppend(new_stream_id(), 0, events(2))])
    error = await raw_sql(INSERT_COPY_OF_FIRST.format(position=4, stream_version=100))
    assert error is not None
    assert [event.position for event in await store.read_all(0, 10)] == [1, 2]


@pytest.mark.parametrize(("second", "after"), [(5, [1, 2]), (4, [1, 2, 3, 4])])
async def test_raw_insert_of_two_rows_goes_in_only_without_a_gap_between_them(
    store: EventStore, raw_sql: RawSql, second: int, after: list[int]
) -> None:
    """One statement inserting head+1 and head+3 fails whole; head+1 and head+2 go in."""
    await store.append([StreamAppend(new_stream_id(), 0, events(2))])
    first = INSERT_COPY_OF_FIRST.format(position=3, stream_version=100)
    other = INSERT_COPY_OF_FIRST.format(position=second, stream_version=101).split("SELECT", 1)
    error = await raw_sql(f"{first} UNION ALL SELECT {other[1]}")
    assert (error is None) == (second == 4), error
    assert [event.position for event in await store.read_all(0, 10)] == after


async def test_raw_insert_of_an_existing_stream_version_is_refused(
    store: EventStore, raw_sql: RawSql
) -> None:
    """Inserting a second row for (stream, version 1) at the next position fails."""
    await store.append([StreamAppend(new_stream_id(), 0, events(2))])
    error = await raw_sql(INSERT_COPY_OF_FIRST.format(position=3, stream_version=1))
    assert error is not None
    assert await store.head_position() == 2


async def test_schema_version_is_recorded_and_reopening_is_idempotent(
    store: EventStore, make_store: MakeStore
) -> None:
    """Open the same database twice more: the schema version and the events are unchanged."""
    version = await store.schema_version()
    assert version >= 1
    written = await store.append([StreamAppend(new_stream_id(), 0, events(2))])
    for _ in range(2):
        again = make_store()
        await again.open()
        assert await again.schema_version() == version
        assert await again.read_all(0, 10) == written
        await again.close()


async def test_concurrent_first_opens_migrate_once(make_store: MakeStore) -> None:
    """Four stores open a fresh database at once: all succeed at one schema version."""
    stores = [make_store() for _ in range(4)]
    await asyncio.gather(*(each.open() for each in stores))
    versions = {await each.schema_version() for each in stores}
    assert len(versions) == 1
    await stores[0].append([StreamAppend(new_stream_id(), 0, events(1))])
    assert await stores[3].head_position() == 1


async def test_open_refuses_a_database_newer_than_the_code(
    store: EventStore, make_store: MakeStore, raw_sql: RawSql
) -> None:
    """A database recording migration 9999 makes open raise SchemaTooNew."""
    error = await raw_sql(
        "INSERT INTO pointex_schema_migrations (version, applied_at_us) VALUES (9999, 0)"
    )
    assert error is None
    with pytest.raises(SchemaTooNew):
        await make_store().open()
    assert await store.schema_version() == 9999


async def test_open_refuses_unsafe_durability_without_an_override(make_store: MakeStore) -> None:
    """synchronous_commit=off (PostgreSQL) or synchronous=NORMAL (SQLite) refuses to open."""
    unsafe = make_store(unsafe_durability_settings=True)
    with pytest.raises(DurabilityUnsafe) as raised:
        await unsafe.open()
    assert "synchronous" in str(raised.value)


async def test_open_accepts_unsafe_durability_with_an_override_and_logs_a_warning(
    make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """With the override, the unsafe store opens and works, and a WARNING says so."""
    unsafe = make_store(unsafe_durability_settings=True, allow_unsafe_durability=True)
    with caplog.at_level(logging.WARNING, logger="pointex.server.eventstore"):
        await unsafe.open()
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "UNSAFE" in warnings[0].getMessage()
    assert warnings[0].name.startswith("pointex.server.eventstore.")
    await unsafe.append([StreamAppend(new_stream_id(), 0, events(1))])
    assert await unsafe.head_position() == 1


async def test_safe_durability_opens_without_a_warning(
    make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The default settings open with no durability warning."""
    with caplog.at_level(logging.WARNING, logger="pointex.server.eventstore"):
        await make_store().open()
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


async def test_snapshot_save_load_newer_wins_and_delete(store: EventStore) -> None:
    """Save v3, then an older v2 (ignored), then v5 (kept); delete it; events remain."""
    stream_id = new_stream_id()
    written = await store.append([StreamAppend(stream_id, 0, events(5))])
    assert await store.load_snapshot(stream_id) is None
    await store.save_snapshot(Snapshot(stream_id, 3, "AccountState", 1, b"v3"))
    assert await store.load_snapshot(stream_id) == Snapshot(stream_id, 3, "AccountState", 1, b"v3")
    await store.save_snapshot(Snapshot(stream_id, 2, "AccountState", 1, b"v2"))
    loaded = await store.load_snapshot(stream_id)
    assert loaded is not None
    assert (loaded.stream_version, loaded.data) == (3, b"v3")
    await store.save_snapshot(Snapshot(stream_id, 5, "AccountState", 2, b"v5"))
    assert await store.load_snapshot(stream_id) == Snapshot(stream_id, 5, "AccountState", 2, b"v5")
    await store.delete_snapshots(stream_id)
    assert await store.load_snapshot(stream_id) is None
    # Rebuilding from the events alone is still possible: they are all there.
    assert await store.read_stream(stream_id) == written


async def test_snapshot_of_equal_version_replaces_the_stored_one(store: EventStore) -> None:
    """A re-snapshot at the same version (say, a new snapshot schema) replaces the old one."""
    stream_id = new_stream_id()
    await store.save_snapshot(Snapshot(stream_id, 4, "AccountState", 1, b"old"))
    await store.save_snapshot(Snapshot(stream_id, 4, "AccountState", 2, b"new"))
    assert await store.load_snapshot(stream_id) == Snapshot(stream_id, 4, "AccountState", 2, b"new")


async def test_delete_all_snapshots_keeps_every_event(store: EventStore) -> None:
    """Deleting all snapshots removes each stream's snapshot and no event."""
    streams = [new_stream_id(), new_stream_id()]
    await store.append([StreamAppend(each, 0, events(2)) for each in streams])
    for each in streams:
        await store.save_snapshot(Snapshot(each, 2, "AccountState", 1, b"state"))
    await store.delete_snapshots()
    for each in streams:
        assert await store.load_snapshot(each) is None
    assert await store.head_position() == 4
