"""A PostgreSQL event store written by schema version 1 opens under the current code.

Version 2 replaced the insert guard (a transition table) by one that reads the primary key;
an existing log must keep its rows, take the new guard and go on appending without a gap.
"""

from __future__ import annotations

import asyncpg

from pointex.server.eventstore.port import NewEvent, StreamAppend
from pointex.server.eventstore.postgres import sql
from pointex.server.eventstore.postgres.appender import POSITION_LOCK_KEY
from pointex.server.eventstore.postgres.store import _MIGRATIONS, PostgresEventStore

EVENT = NewEvent("Counted", 1, b"{}")

_INSERT_AFTER_HEAD = """
INSERT INTO events (
    position, stream_id, stream_version, slice, category, type, schema_version,
    data, metadata, recorded_at_us
)
SELECT coalesce(max(position), 0) + {step}, 'acct-raw', {version}, 0, 'acct', 'Counted', 1,
    '', '', 0
FROM events
"""


async def _write_version_one(dsn: str, schema: str) -> None:
    """Create `schema` as the version 1 code left it: its migration and three events."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute(f"CREATE SCHEMA {schema}")  # Hex digits only.
            await connection.execute(f"SET LOCAL search_path = {schema}")
            await connection.execute(sql.CREATE_MIGRATIONS_TABLE)
            await connection.execute(_MIGRATIONS[0].sql)
            await connection.execute(sql.INSERT_MIGRATION, 1)
            await connection.execute(sql.TAKE_LOCK, POSITION_LOCK_KEY)
            for version in (1, 2, 3):
                await connection.execute(_INSERT_AFTER_HEAD.format(step=1, version=version))
    finally:
        await connection.close()


async def test_a_version_one_log_is_upgraded_and_keeps_its_guard(
    pg_dsn: str, pg_schema: str
) -> None:
    """Open a version 1 log: it migrates, keeps its rows, appends on, still refuses a gap."""
    await _write_version_one(pg_dsn, pg_schema)
    store = PostgresEventStore(pg_dsn, schema=pg_schema)
    await store.open()
    try:
        assert await store.schema_version() == len(_MIGRATIONS) >= 2
        assert [event.position for event in await store.read_all(0, 10)] == [1, 2, 3]
        await store.append([StreamAppend("acct-new", 0, (EVENT, EVENT))])
        connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
        try:
            gap = _INSERT_AFTER_HEAD.format(step=2, version=4)
            error = None
            try:
                await connection.execute(gap)
            except asyncpg.IntegrityConstraintViolationError as refused:
                error = str(refused)
            assert error is not None
            assert "without a gap" in error
        finally:
            await connection.close()
        log = await store.read_all(0, 10)
        assert [event.position for event in log] == [1, 2, 3, 4, 5]
        assert [event.stream_id for event in log[3:]] == ["acct-new", "acct-new"]
    finally:
        await store.close()
