"""The SQLite store reads a stream's version off its index, whatever the stream's length.

Every append checks the current version of each stream it writes. Reading it as a max() per
GROUP BY group visited every event of the stream, so each commit on a hot account with a
long history cost more than the last. Counting SQLite's virtual-machine steps (not time)
shows whether the check still depends on how long the stream is.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from pointex.server.eventstore.port import NewEvent, StreamAppend
from pointex.server.eventstore.sqlite import SqliteEventStore, sql

EVENT = NewEvent("Counted", 1, b"{}")
SHORT_EVENTS = 10
LONG_EVENTS = 5_000
PER_APPEND = 500
# Steps between two calls of the progress handler: small, so that the count is fine-grained.
STEP = 10


async def _fill(path: Path) -> None:
    store = SqliteEventStore(path)
    await store.open()
    try:
        await store.append([StreamAppend("account-short", 0, (EVENT,) * SHORT_EVENTS)])
        for version in range(0, LONG_EVENTS, PER_APPEND):
            await store.append([StreamAppend("account-long", version, (EVENT,) * PER_APPEND)])
    finally:
        await store.close()


def _steps(connection: sqlite3.Connection, stream_ids: list[str]) -> tuple[int, list[object]]:
    """Run the version check for `stream_ids`; return its step count (in STEPs) and rows."""
    calls = [0]

    def count() -> int:
        calls[0] += 1
        return 0  # Go on.

    connection.set_progress_handler(count, STEP)
    try:
        rows = connection.execute(sql.STREAM_VERSIONS, (json.dumps(stream_ids),)).fetchall()
    finally:
        connection.set_progress_handler(None, STEP)
    return calls[0], rows


async def test_the_version_check_does_not_grow_with_the_stream(sqlite_file: Path) -> None:
    """A stream of 5,000 events costs the check about what a stream of 10 does."""
    await _fill(sqlite_file)
    with contextlib.closing(sqlite3.connect(sqlite_file)) as connection:
        short, short_rows = _steps(connection, ["account-short"])
        long, long_rows = _steps(connection, ["account-long"])
        _, mixed = _steps(connection, ["account-long", "account-none", "account-short"])
    assert long <= 2 * short + 2, (short, long)
    assert short_rows == [("account-short", SHORT_EVENTS)]
    assert long_rows == [("account-long", LONG_EVENTS)]
    assert mixed == [
        ("account-long", LONG_EVENTS),
        ("account-none", None),
        ("account-short", SHORT_EVENTS),
    ]
