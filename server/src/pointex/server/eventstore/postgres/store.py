"""Keep the event log in PostgreSQL through an asyncpg pool.

Positions are gap-free and in commit order even with several processes: every appending
transaction takes one transaction-scoped advisory lock (`appender.POSITION_LOCK_KEY`) and then
reads the head. Locks are released after a commit becomes visible, so under READ COMMITTED
the next holder's fresh statement sees the previous holder's rows. The migrations make the
database refuse any insert that does not hold that lock or that leaves a gap.

Appends are written by `appender.Appender`, which may send a large batch as one call of the
database function `append_events`, under the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg

from pointex.server import limits
from pointex.server.eventstore.durability import (
    enforce_durability,
    postgres_durability_problems,
)
from pointex.server.eventstore.feed import AppendSignal, follow
from pointex.server.eventstore.planning import (
    VersionRaceError,
    assert_valid_snapshot,
    assert_valid_units,
    conflict_after_race,
    stream_ids_of,
)
from pointex.server.eventstore.port import (
    BeforeCommit,
    RecordedEvent,
    Snapshot,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
    by_stream,
)
from pointex.server.eventstore.postgres import sql
from pointex.server.eventstore.postgres.appender import Appender
from pointex.server.eventstore.postgres.errors import DRIVER_ERRORS, translated
from pointex.server.eventstore.postgres.leases import (
    Lease,
    SliceLeases,
    read_leases,
    read_members,
)
from pointex.server.pg_arrays import text_array
from pointex.server.store_errors import SchemaNotMigrated, StoreError
from pointex.server.store_migrations import Migration, load_migrations, pending_migrations

_log = logging.getLogger(__name__)

# Serialises concurrent openers of one database while they migrate it.
MIGRATION_LOCK_KEY = 0x706F696E74657802
NOTIFY_CHANNEL = "pointex_events"

# Schema names go into search_path and into CREATE SCHEMA, which take no parameters, so
# only plain lower-case identifiers are accepted; they need no quoting.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATIONS = load_migrations("pointex.server.eventstore.postgres")
# What PostgreSQL answers a role that may not create in the schema: no privilege, or (for a
# schema it may not even use) no schema in its search_path to create in.
_NOT_PERMITTED = (asyncpg.InsufficientPrivilegeError, asyncpg.InvalidSchemaNameError)


class PostgresEventStore:
    """An `EventStore` on PostgreSQL (asyncpg)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        allow_unsafe_durability: bool = False,
        pool_connections_min: int = 1,
        pool_connections_max: int = limits.pg_pool_connections_max,
        statement_ms: int = limits.pg_statement_ms_max,
        connect_ms: int = limits.pg_connect_ms_max,
        subscribe_idle_ms: int = limits.subscribe_idle_ms_max,
        server_settings: Mapping[str, str] | None = None,
        before_commit: BeforeCommit | None = None,
        stalled_transaction_ms: int | None = None,
    ) -> None:
        """Configure the store; `open` connects.

        Args:
            dsn: libpq connection string, without a ``schema`` parameter.
            schema: Schema holding the tables; created when missing.
            allow_unsafe_durability: Open (with a warning) even when commits could be lost.
            pool_connections_min: Connections the pool keeps open.
            pool_connections_max: Connections the pool may open.
            statement_ms: Longest statement before it is cancelled.
            connect_ms: Longest wait to connect or to take a pooled connection.
            subscribe_idle_ms: Longest sleep of a caught-up subscriber without a wake-up.
            server_settings: Extra session settings (tests use them to misconfigure).
            before_commit: Test hook run inside each append transaction before COMMIT.
            stalled_transaction_ms: Longest pause of this store's process inside a
                transaction before the database ends it (default: `statement_ms`). A server
                holding slice ranges by lease sets its lease: a server paused inside an
                append holds the position lock and its ranges' lease rows, and a takeover
                must not wait longer than the lease for them.
        """
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}: {schema!r}")
        assert 1 <= pool_connections_min <= pool_connections_max, pool_connections_min
        assert pool_connections_max <= limits.pg_pool_connections_max, pool_connections_max
        assert 1 <= statement_ms <= limits.pg_statement_ms_max, statement_ms
        assert 1 <= connect_ms <= limits.pg_connect_ms_max, connect_ms
        self._dsn = dsn
        self._schema = schema
        self._allow_unsafe_durability = allow_unsafe_durability
        self._pool_connections = (pool_connections_min, pool_connections_max)
        self._statement_ms = statement_ms
        self._connect_ms = connect_ms
        self._subscribe_idle_ms = subscribe_idle_ms
        self._server_settings = {
            "search_path": schema,
            "application_name": "pointex",
            # A writer stuck between statements (a paused process) would hold the position
            # lock and stall every writer; the server ends its transaction instead.
            "idle_in_transaction_session_timeout": str(stalled_transaction_ms or statement_ms),
            # Every statement of this store (and of the insert trigger) is an index lookup.
            # An events table that was never analysed (autovacuum off, or a young table)
            # can make the planner pick full scans, and every append then reads the whole
            # log: throughput fell with each run. Scans stay possible where no index fits.
            "enable_seqscan": "off",
            **(server_settings or {}),
        }
        self._pool: Any = None
        self._listener: Any = None
        self._appender = Appender(self._connection, before_commit)
        self._listener_lock = asyncio.Lock()
        self._signal = AppendSignal()

    def _connect_options(self) -> dict[str, Any]:
        """Return the options of every connection, stated rather than left to defaults."""
        # asyncpg takes seconds; the bounds are kept in integer milliseconds.
        return {
            "timeout": self._connect_ms / 1000,
            "command_timeout": self._statement_ms / 1000,
            "server_settings": dict(self._server_settings),
        }

    async def open(self) -> None:
        """Connect, check durability settings and apply pending migrations."""
        assert self._pool is None, "open() called twice"
        with translated():
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._pool_connections[0],
                max_size=self._pool_connections[1],
                max_inactive_connection_lifetime=300,
                reset=_keep_session,
                **self._connect_options(),
            )
        try:
            async with self._connection() as connection:
                await self._check_durability(connection)
                await self._migrate(connection)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the listener and the pool."""
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        if listener is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await listener.close(timeout=self._connect_ms / 1000)
        if pool is not None:
            try:
                async with asyncio.timeout(self._connect_ms / 1000):
                    await pool.close()
            except DRIVER_ERRORS:
                # A connection still lent out (a reader stuck on a dead server) must not
                # keep the process from shutting down.
                pool.terminate()

    async def _check_durability(self, connection: Any) -> None:
        """Refuse settings that acknowledge commits before they are durable."""
        synchronous_commit = await connection.fetchval("SHOW synchronous_commit")
        fsync = await connection.fetchval("SHOW fsync")
        enforce_durability(
            postgres_durability_problems(str(synchronous_commit), str(fsync)),
            allow_unsafe_durability=self._allow_unsafe_durability,
            logger=_log,
        )

    async def _migrate(self, connection: Any) -> None:
        """Apply pending migrations, one opener at a time; with none pending, change nothing.

        So a role that may not create tables (the servers' least-privilege role,
        docs/operations.md) opens a migrated store, and on a store that lacks a migration
        gets `SchemaNotMigrated`, which names the migration and how to apply it.
        """
        async with connection.transaction(isolation="read_committed"):
            await connection.execute(sql.TAKE_LOCK, MIGRATION_LOCK_KEY)
            pending = pending_migrations(
                _MIGRATIONS,
                await self._applied_versions(connection),
                store="event store",
                advice="upgrade Pointex before opening this store",
            )
            if not pending:
                return
            try:
                await self._apply(connection, pending)
            except _NOT_PERMITTED as error:
                names = ", ".join(migration.name for migration in pending)
                raise SchemaNotMigrated(
                    f"the event store (schema {self._schema}) lacks migration {names}, and "
                    f"this role may not apply it ({error}); run `pointex-command-server "
                    "migrate` with the store URL of the schema's owner role, then start "
                    "again (docs/operations.md)"
                ) from error

    async def _applied_versions(self, connection: Any) -> list[int]:
        """Return the migrations recorded in the schema, none when it has no record yet."""
        try:
            if not await connection.fetchval(sql.MIGRATIONS_TABLE_EXISTS, self._schema):
                return []
            return [row[0] for row in await connection.fetch(sql.SELECT_MIGRATIONS)]
        # The table exists: a role that does not find it may not use the schema.
        except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError) as error:
            raise StoreError(
                f"this role may not read the event store (schema {self._schema}): {error}; "
                "grant it the privileges docs/operations.md lists"
            ) from error

    async def _apply(self, connection: Any, pending: Sequence[Migration]) -> None:
        """Create the schema if missing and apply `pending` (in the caller's transaction)."""
        if not await connection.fetchval(sql.SCHEMA_EXISTS, self._schema):
            # The name matched _SCHEMA_NAME, so it is a plain identifier.
            await connection.execute(f"CREATE SCHEMA {self._schema}")
        await connection.execute(sql.CREATE_MIGRATIONS_TABLE)
        for migration in pending:
            await connection.execute(migration.sql)
            await connection.execute(sql.INSERT_MIGRATION, migration.version)
            _log.info("applied event-store migration %s", migration.name)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """Lend a pooled connection, translating every driver error raised meanwhile."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL event store is closed")
        with translated():
            async with pool.acquire(timeout=self._connect_ms / 1000) as connection:
                yield connection

    def slice_leases(self, owner_id: str, lease_ms: int, address: str = "") -> SliceLeases:
        """Return the slice-range leases this store's writer holds as `owner_id`.

        `address` is where other command servers reach this one (SliceLeases).

        From now on every event this store appends carries the epoch held for its range, and
        an event of a range held at another epoch is refused (`FencedOff`). Without leases,
        every event is at epoch 0, as a command server that runs alone writes it.
        """
        slice_leases = SliceLeases(self._connection, owner_id, lease_ms, address)
        self._appender.carry_epochs(slice_leases.epochs, slice_leases.fenced.set)
        return slice_leases

    async def leases(self) -> list[Lease]:
        """Return every slice range's lease, in range order."""
        return await read_leases(self._connection)

    async def members(self) -> list[str]:
        """Return the owner ids of the live command servers balancing the ranges."""
        return await read_members(self._connection)

    async def schema_version(self) -> int:
        """Return the highest migration applied to the database."""
        async with self._connection() as connection:
            return int(await connection.fetchval(sql.SCHEMA_VERSION))

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
                plan = await self._appender.write(units)
            except VersionRaceError:
                # Only a writer bypassing the position lock can get here; the retry re-reads
                # every version under the lock.
                _log.warning("append lost an insert race; retrying under the position lock")
                continue
            if plan.rows:
                self._signal.fire()
            return plan.results
        versions = await self.stream_versions(stream_ids_of(units[:1]))
        raise conflict_after_race(units[0], versions)

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Return the current version of each stream (0 when absent)."""
        async with self._connection() as connection:
            _, _, versions = await connection.fetchrow(
                sql.HEAD_CLOCK_VERSIONS, text_array(list(stream_ids))
            )
        return {stream_id: int(v) for stream_id, v in zip(stream_ids, versions, strict=True)}

    async def read_stream(
        self, stream_id: str, from_version: int = 1, limit: int = limits.read_batch_events_max
    ) -> list[RecordedEvent]:
        """Return up to ``limit`` events of a stream from ``from_version``, in version order."""
        assert from_version >= 1, from_version
        assert 1 <= limit <= limits.read_batch_events_max, limit
        async with self._connection() as connection:
            rows = await connection.fetch(sql.READ_STREAM, stream_id, from_version, limit)
        return [_recorded(row) for row in rows]

    async def read_stream_starts(
        self, stream_ids: Sequence[str], count: int
    ) -> dict[str, list[RecordedEvent]]:
        """Return the first ``count`` events of each stream, in version order, in one read."""
        assert len(stream_ids) <= limits.read_starts_streams_max, len(stream_ids)
        assert 1 <= count <= limits.read_starts_events_max, count
        async with self._connection() as connection:
            rows = await connection.fetch(
                sql.READ_STREAM_STARTS, text_array(list(stream_ids)), count
            )
        return by_stream(map(_recorded, rows))

    async def stream_version(self, stream_id: str) -> int:
        """Return the version of a stream's last event, 0 if the stream does not exist."""
        versions = await self.stream_versions([stream_id])
        return versions[stream_id]

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        """Return up to ``limit`` events with a position above ``after_position``, ascending."""
        assert after_position >= 0, after_position
        assert 1 <= limit <= limits.read_batch_events_max, limit
        async with self._connection() as connection:
            rows = await connection.fetch(sql.READ_ALL, after_position, limit)
        return [_recorded(row) for row in rows]

    async def head_position(self) -> int:
        """Return the highest committed position, 0 if the log is empty."""
        async with self._connection() as connection:
            return int(await connection.fetchval(sql.HEAD_POSITION))

    def subscribe(self, after_position: int) -> AsyncIterator[RecordedEvent]:
        """Yield every event after ``after_position``: catch-up, then live, each once."""
        return follow(
            self.read_all,
            self._signal,
            after_position,
            idle_ms=self._subscribe_idle_ms,
            before_wait=self._ensure_listener,
        )

    async def _ensure_listener(self) -> None:
        """Listen for commits of other processes on this schema (NOTIFY at their COMMIT)."""
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            if self._pool is None:
                raise StoreUnavailable("the PostgreSQL event store is closed")
            with translated():
                listener = await asyncpg.connect(self._dsn, **self._connect_options())
                await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._listener = listener

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        """Wake this store's subscribers when a commit on this schema is announced."""
        if payload == self._schema:
            self._signal.fire()

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the snapshot unless the stored one is newer (one snapshot per stream)."""
        assert_valid_snapshot(snapshot)
        async with self._connection() as connection:
            await connection.execute(
                sql.UPSERT_SNAPSHOT,
                snapshot.stream_id,
                snapshot.stream_version,
                snapshot.type,
                snapshot.schema_version,
                snapshot.data,
            )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Return the stream's snapshot, or None."""
        async with self._connection() as connection:
            row = await connection.fetchrow(sql.LOAD_SNAPSHOT, stream_id)
        if row is None:
            return None
        return Snapshot(
            stream_id=row[0],
            stream_version=row[1],
            type=row[2],
            schema_version=row[3],
            data=bytes(row[4]),
        )

    async def delete_snapshots(self, stream_id: str | None = None) -> None:
        """Delete one stream's snapshot, or all when ``stream_id`` is None."""
        async with self._connection() as connection:
            if stream_id is None:
                await connection.execute(sql.DELETE_ALL_SNAPSHOTS)
            else:
                await connection.execute(sql.DELETE_SNAPSHOT, stream_id)


async def _keep_session(_connection: object) -> None:
    """Skip the pool's reset on release (RESET ALL, UNLISTEN *, CLOSE ALL, unlocks).

    Pooled connections never change session state: settings are given at connect, the
    advisory locks are transaction-scoped, and LISTEN is on a connection of its own. The
    reset would add a round trip to every append and every read; asyncpg still rolls back
    a transaction left open before calling this.
    """


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
