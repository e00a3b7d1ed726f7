"""Writing to the PostgreSQL event store by hand, as another writer would, for the tests."""

from __future__ import annotations

import asyncpg

from pointex.server.eventstore.port import stream_category, stream_slice
from pointex.server.eventstore.postgres.appender import POSITION_LOCK_KEY


async def insert_holding_the_lock(
    connection: asyncpg.Connection, stream_id: str, epoch: int = 0
) -> None:
    """In the connection's open transaction, take the position lock and append one event.

    The event is version 1 of `stream_id`, at the head, written at `epoch`. The lock is held
    until the transaction ends, as a writer in the middle of its append holds it.
    """
    await connection.execute("SELECT pg_advisory_xact_lock($1)", POSITION_LOCK_KEY)
    await connection.execute(
        "INSERT INTO events (position, stream_id, stream_version, slice, category, type, "
        "schema_version, data, metadata, recorded_at_us, epoch) VALUES ("
        "(SELECT coalesce(max(position), 0) + 1 FROM events), $1, 1, $2, $3, "
        "'Counted', 1, '', '', 0, $4)",
        stream_id,
        stream_slice(stream_id),
        stream_category(stream_id),
        epoch,
    )
