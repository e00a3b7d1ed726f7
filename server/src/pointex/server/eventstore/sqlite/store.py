"""Keep the event log in one SQLite file through aiosqlite (the embedded default).

One writer connection takes every write, serialised by an asyncio lock and opened with
BEGIN IMMEDIATE, so SQLite's file lock also orders writers of other processes. A second
connection serves reads; in WAL mode they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import aiosqlite

from pointex.server import limits
from pointex.server.eventstore.durability import (
    SQLITE_SYNCHRONOUS_LEVELS,
    enforce_durability,
    sqlite_durability_problems,
)
from pointex.server.eventstore.feed import AppendSignal, follow
from pointex.server.eventstore.planning import (
    BatchPlan,
    VersionRaceError,
    assert_valid_snapshot,
    assert_valid_units,
    conflict_after_race,
    plan_batch,
    stream_ids_of,
)
from pointex.server.eventstore.port import (
    BeforeCommit,
    RecordedEvent,
    Snapshot,
    StoreError,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
    by_stream,
    stream_category,
)
from pointex.server.eventstore.sqlite import sql
from pointex.server.eventstore.sqlite.errors import DRIVER_ERRORS, translate, translated
from pointex.server.store_migrations import load_migrations, pending_migrations, split_sqlite_script

_log = logging.getLogger(__name__)
_MIGRATIONS = load_migrations("pointex.server.eventstore.sqlite")


class SqliteEventStore:
    """An `EventStore` in a SQLite file (aiosqlite)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        allow_unsafe_durability: bool = False,
        synchronous: str = "FULL",
        busy_ms: int = limits.sqlite_busy_ms_max,
        subscribe_idle_ms: int = limits.subscribe_idle_ms_max,
        before_commit: BeforeCommit | None = None,
    ) -> None:
        """Configure the store; `open` connects.

        Args:
            path: The database file; created when missing. Never ``:memory:``: the store
                must be durable.
            allow_unsafe_durability: Open (with a warning) even when commits could be lost.
            synchronous: SQLite's ``PRAGMA synchronous``; below FULL is refused unless
                ``allow_unsafe_durability``.
            busy_ms: Longest wait for another connection's lock.
            subscribe_idle_ms: Longest sleep of a caught-up subscriber without a wake-up;
                commits of other processes are seen within it.
            before_commit: Test hook run inside each append transaction before COMMIT.
        """
        self._path = os.fspath(path)
        if self._path in {"", ":memory:"} or self._path.startswith("file:"):
            raise ValueError(f"the SQLite event store needs a durable file path: {path!r}")
        if synchronous.upper() not in SQLITE_SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {sorted(SQLITE_SYNCHRONOUS_LEVELS)}")
        assert 1 <= busy_ms <= limits.sqlite_busy_ms_max, busy_ms
        self._allow_unsafe_durability = allow_unsafe_durability
        self._synchronous = synchronous.upper()
        self._busy_ms = busy_ms
        self._subscribe_idle_ms = subscribe_idle_ms
        self._before_commit = before_commit
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._signal = AppendSignal()

    async def open(self) -> None:
        """Connect, check durability settings and apply pending migrations."""
        assert self._writer is None, "open() called twice"
        with translated():
            # aiosqlite leaves a worker thread behind when its connect fails, which then
            # reports into a possibly closed event loop; so fail here, without it.
            await asyncio.to_thread(_probe_file, self._path)
        try:
            self._writer = await self._connect()
            await self._check_settings(self._writer)
            await self._migrate(self._writer)
            self._reader = await self._connect()
            with translated():
                await self._reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> aiosqlite.Connection:
        """Open one connection with every setting stated rather than left to defaults."""
        with translated():
            # isolation_level=None: the store issues BEGIN and COMMIT itself.
            connection = await aiosqlite.connect(self._path, isolation_level=None)
            try:
                # PRAGMAs take no parameters; both values are validated above.
                await connection.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
                await connection.execute(f"PRAGMA synchronous = {self._synchronous}")
            except BaseException:
                await connection.close()
                raise
        return connection

    async def close(self) -> None:
        """Close both connections."""
        for connection in (self._reader, self._writer):
            if connection is not None:
                try:
                    await connection.close()
                except DRIVER_ERRORS:
                    _log.warning("closing a SQLite connection failed", exc_info=True)
        self._reader = None
        self._writer = None

    async def _check_settings(self, writer: aiosqlite.Connection) -> None:
        """Switch to WAL and refuse a synchronous level that could lose commits."""
        journal_mode = await _switch_to_wal(writer)
        with translated():
            (synchronous_level,) = await _fetchone(writer, "PRAGMA synchronous")
        if journal_mode.lower() != "wal":
            raise StoreError(f"SQLite refused journal_mode=WAL (got {journal_mode!r})")
        enforce_durability(
            sqlite_durability_problems(int(synchronous_level)),
            allow_unsafe_durability=self._allow_unsafe_durability,
            logger=_log,
        )

    async def _migrate(self, writer: aiosqlite.Connection) -> None:
        """Apply pending migrations in one transaction; BEGIN IMMEDIATE serialises openers."""
        with translated():
            await writer.execute("BEGIN IMMEDIATE")
            try:
                await writer.execute(sql.CREATE_MIGRATIONS_TABLE)
                applied = await writer.execute_fetchall(sql.SELECT_MIGRATIONS)
                for migration in pending_migrations(
                    _MIGRATIONS,
                    [row[0] for row in applied],
                    store="event store",
                    advice="upgrade Pointex before opening this store",
                ):
                    for statement in split_sqlite_script(migration.sql):
                        await writer.execute(statement)
                    await writer.execute(sql.INSERT_MIGRATION, (migration.version, _now_us()))
                    _log.info("applied event-store migration %s", migration.name)
            except BaseException:
                await writer.execute("ROLLBACK")
                raise
            await writer.execute("COMMIT")

    def _require(self, connection: aiosqlite.Connection | None) -> aiosqlite.Connection:
        """Return an open connection, or report the store closed."""
        if connection is None:
            raise StoreUnavailable("the SQLite event store is closed")
        return connection

    async def _read(self, statement: str, parameters: Sequence[Any]) -> Iterable[Any]:
        """Run one read on the reader connection."""
        reader = self._require(self._reader)
        with translated():
            return await reader.execute_fetchall(statement, parameters)

    async def schema_version(self) -> int:
        """Return the highest migration applied to the database."""
        ((version,),) = await self._read(sql.SCHEMA_VERSION, ())
        return int(version)

    async def append(self, appends: Sequence[StreamAppend]) -> list[RecordedEvent]:
        """Append to one or more streams in one atomic transaction."""
        (result,) = await self.append_batch([appends])
        if isinstance(result, WrongExpectedVersion):
            raise result
        return result

    async def append_batch(
        self, units: Sequence[Sequence[StreamAppend]]
    ) -> list[list[RecordedEvent] | WrongExpectedVersion]:
        """Commit many independent units in one transaction (group commit)."""
        assert_valid_units(units)
        for _ in range(limits.append_race_retries_max + 1):
            try:
                # Shielded: a caller cancelled mid-transaction (shutdown, a dropped request)
                # must not leave the writer connection inside an open transaction, which
                # would make every later BEGIN fail. The transaction runs to its end.
                plan = await asyncio.shield(self._write(units))
            except VersionRaceError:
                _log.warning("append lost an insert race; retrying under the write lock")
                continue
            if plan.rows:
                self._signal.fire()
            return plan.results
        raise conflict_after_race(units[0], await self.stream_versions(stream_ids_of(units[:1])))

    async def _write(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
        """Run one appending transaction; COMMIT failures are reported as outcome unknown."""
        async with self._write_lock:
            writer = self._require(self._writer)
            with translated():
                await writer.execute("BEGIN IMMEDIATE")
            try:
                with translated():
                    plan = await self._plan_and_insert(writer, units)
                if self._before_commit is not None and plan.rows:
                    await self._before_commit(plan.rows)
                with translated(during_commit=True):
                    await writer.execute("COMMIT")
            except BaseException:
                # A failed COMMIT can leave the transaction open; end it, so the next
                # BEGIN on this connection works.
                if writer.in_transaction:
                    with translated():
                        await writer.execute("ROLLBACK")
                raise
        return plan

    async def _plan_and_insert(
        self, writer: aiosqlite.Connection, units: Sequence[Sequence[StreamAppend]]
    ) -> BatchPlan:
        """Check versions under the write lock and insert the batch's rows."""
        stream_ids = stream_ids_of(units)
        ((head,),) = await writer.execute_fetchall(sql.HEAD_POSITION)
        rows = await writer.execute_fetchall(sql.STREAM_VERSIONS, (json.dumps(stream_ids),))
        versions = {row[0]: row[1] for row in rows if row[1] is not None}
        plan = plan_batch(units, versions, head, _now_us())
        if plan.rows:
            await writer.executemany(sql.INSERT_EVENT, [_row_values(row) for row in plan.rows])
        return plan

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Return the current version of each stream (0 when absent)."""
        rows = await self._read(sql.STREAM_VERSIONS, (json.dumps(list(stream_ids)),))
        found = {row[0]: int(row[1]) for row in rows if row[1] is not None}
        return {stream_id: found.get(stream_id, 0) for stream_id in stream_ids}

    async def read_stream(
        self, stream_id: str, from_version: int = 1, limit: int = limits.read_batch_events_max
    ) -> list[RecordedEvent]:
        """Return up to ``limit`` events of a stream from ``from_version``, in version order."""
        assert from_version >= 1, from_version
        assert 1 <= limit <= limits.read_batch_events_max, limit
        rows = await self._read(sql.READ_STREAM, (stream_id, from_version, limit))
        return [_recorded(row) for row in rows]

    async def read_stream_starts(
        self, stream_ids: Sequence[str], count: int
    ) -> dict[str, list[RecordedEvent]]:
        """Return the first ``count`` events of each stream, in version order, in one read."""
        assert len(stream_ids) <= limits.read_starts_streams_max, len(stream_ids)
        assert 1 <= count <= limits.read_starts_events_max, count
        rows = await self._read(sql.READ_STREAM_STARTS, (json.dumps(list(stream_ids)), count))
        return by_stream(map(_recorded, rows))

    async def stream_version(self, stream_id: str) -> int:
        """Return the version of a stream's last event, 0 if the stream does not exist."""
        versions = await self.stream_versions([stream_id])
        return versions[stream_id]

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        """Return up to ``limit`` events with a position above ``after_position``, ascending."""
        assert after_position >= 0, after_position
        assert 1 <= limit <= limits.read_batch_events_max, limit
        rows = await self._read(sql.READ_ALL, (after_position, limit))
        return [_recorded(row) for row in rows]

    async def head_position(self) -> int:
        """Return the highest committed position, 0 if the log is empty."""
        ((head,),) = await self._read(sql.HEAD_POSITION, ())
        return int(head)

    def subscribe(self, after_position: int) -> AsyncIterator[RecordedEvent]:
        """Yield every event after ``after_position``: catch-up, then live, each once."""
        return follow(self.read_all, self._signal, after_position, idle_ms=self._subscribe_idle_ms)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the snapshot unless the stored one is newer (one snapshot per stream)."""
        assert_valid_snapshot(snapshot)
        values = (
            snapshot.stream_id,
            snapshot.stream_version,
            snapshot.type,
            snapshot.schema_version,
            snapshot.data,
            _now_us(),
        )
        await self._write_autocommit(sql.UPSERT_SNAPSHOT, values)

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Return the stream's snapshot, or None."""
        rows = list(await self._read(sql.LOAD_SNAPSHOT, (stream_id,)))
        if not rows:
            return None
        (stream_id, stream_version, type_name, schema_version, data) = rows[0]
        return Snapshot(stream_id, stream_version, type_name, schema_version, bytes(data))

    async def delete_snapshots(self, stream_id: str | None = None) -> None:
        """Delete one stream's snapshot, or all when ``stream_id`` is None."""
        if stream_id is None:
            await self._write_autocommit(sql.DELETE_ALL_SNAPSHOTS, ())
        else:
            await self._write_autocommit(sql.DELETE_SNAPSHOT, (stream_id,))

    async def _write_autocommit(self, statement: str, parameters: Sequence[Any]) -> None:
        """Run one write statement as its own transaction on the writer connection."""
        async with self._write_lock:
            writer = self._require(self._writer)
            with translated():
                await writer.execute(statement, parameters)


def _probe_file(path: str) -> None:
    """Open and close the database file once, raising sqlite3's error if it cannot."""
    sqlite3.connect(path).close()


async def _switch_to_wal(writer: aiosqlite.Connection) -> str:
    """Set journal_mode=WAL (kept in the file) and return the mode SQLite reports.

    Openers of a new file that switch at the same moment deadlock on its lock, and SQLite
    answers BUSY at once instead of waiting; so retry, a bounded number of times.
    """
    for _ in range(limits.sqlite_wal_switch_attempts_max - 1):
        try:
            (journal_mode,) = await _fetchone(writer, "PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise translate(error) from error
            await asyncio.sleep(limits.sqlite_wal_switch_pause_ms / 1000)
            continue
        return str(journal_mode)
    with translated():
        (journal_mode,) = await _fetchone(writer, "PRAGMA journal_mode = WAL")
    return str(journal_mode)


async def _fetchone(connection: aiosqlite.Connection, statement: str) -> tuple[Any, ...]:
    """Return the single row of a statement."""
    async with connection.execute(statement) as cursor:
        row = await cursor.fetchone()
    assert row is not None, statement
    return tuple(row)


def _now_us() -> int:
    """Return the wall clock in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def _row_values(row: RecordedEvent) -> tuple[Any, ...]:
    """Return the INSERT parameters of one event, in `sql.INSERT_EVENT` order."""
    return (
        row.position,
        row.stream_id,
        row.stream_version,
        row.slice,
        stream_category(row.stream_id),
        row.type,
        row.schema_version,
        row.data,
        row.metadata,
        row.recorded_at_us,
    )


def _recorded(row: Any) -> RecordedEvent:
    """Build a recorded event from a row of `sql.EVENT_COLUMNS`."""
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        stream_version=row[2],
        slice=row[3],
        type=row[4],
        schema_version=row[5],
        data=bytes(row[6]),
        metadata=bytes(row[7]),
        recorded_at_us=row[8],
    )
