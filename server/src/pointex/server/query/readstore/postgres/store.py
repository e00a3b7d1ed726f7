"""Keep the read models in PostgreSQL through an asyncpg pool, in a schema of their own.

Every batch is one transaction: the checkpoint update (which also guards against a second
writer: it names the checkpoint the batch continues from) and one array statement per
table. Audits and comparisons read in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg

from pointex.server import limits
from pointex.server.pg_arrays import int_array, text_array
from pointex.server.query.readstore import rows
from pointex.server.query.readstore.migrations import (
    GENERATION_TABLES,
    PROJECTION_TABLES,
    generation_of,
    pending_read_migrations,
    render,
    table_prefix,
)
from pointex.server.query.readstore.port import (
    AccountFilter,
    AccountRow,
    Audit,
    Changes,
    CheckpointMoved,
    HistoryFilter,
    InFlightRow,
    MovementRow,
    NotificationFilter,
    NotificationRow,
    PendingIssueRow,
    ProgramRulesRow,
)
from pointex.server.query.readstore.postgres import sql
from pointex.server.query.readstore.postgres.errors import DRIVER_ERRORS, translated
from pointex.server.query.readstore.postgres.market import (
    PostgresMarketReads,
    audit_market,
    write_market_changes,
)
from pointex.server.query.readstore.shielding import run_to_end
from pointex.server.store_errors import StoreError, StoreUnavailable
from pointex.server.store_migrations import load_migrations

_log = logging.getLogger(__name__)
_MIGRATIONS = load_migrations("pointex.server.query.readstore.postgres")
# "pointex" in ASCII, then 03: serialises openers of one read-store schema while they migrate.
MIGRATION_LOCK_KEY = 0x706F696E74657803
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, TimeoutError)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresReadStore(PostgresMarketReads):
    """A `ReadStore` on PostgreSQL (asyncpg)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        pool_connections_max: int = limits.pg_pool_connections_max,
        statement_ms: int = limits.pg_statement_ms_max,
        connect_ms: int = limits.pg_connect_ms_max,
    ) -> None:
        """Configure the store; `open` connects.

        Args:
            dsn: libpq connection string, without a ``schema`` parameter.
            schema: Schema holding the tables; created when missing.
            pool_connections_max: Connections the pool may open.
            statement_ms: Longest statement before it is cancelled.
            connect_ms: Longest wait to connect or to take a pooled connection.
        """
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}: {schema!r}")
        assert 1 <= pool_connections_max <= limits.pg_pool_connections_max, pool_connections_max
        assert 1 <= statement_ms <= limits.pg_statement_ms_max, statement_ms
        assert 1 <= connect_ms <= limits.pg_connect_ms_max, connect_ms
        self._dsn = dsn
        self._schema = schema
        self._pool_connections_max = pool_connections_max
        self._statement_ms = statement_ms
        self._connect_ms = connect_ms
        self._pool: Any = None
        self._active = 0
        self._secret = b""

    async def open(self) -> None:
        """Connect, create the schema if missing, migrate, drop other generations."""
        assert self._pool is None, "open() called twice"
        with translated():
            # asyncpg takes seconds; the bounds are kept in integer milliseconds.
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_connections_max,
                max_inactive_connection_lifetime=300,
                timeout=self._connect_ms / 1000,
                command_timeout=self._statement_ms / 1000,
                server_settings={
                    "search_path": self._schema,
                    "application_name": "pointex-query",
                    "idle_in_transaction_session_timeout": str(self._statement_ms),
                },
            )
        try:
            async with self._transaction() as connection:
                await self._set_up(connection)
        except BaseException:
            await self.close()
            raise

    async def _set_up(self, connection: Any) -> None:
        """Create schema and meta, pick or create the active generation, migrate, tidy up."""
        await connection.execute(sql.TAKE_LOCK, MIGRATION_LOCK_KEY)
        if not await connection.fetchval(sql.SCHEMA_EXISTS, self._schema):
            # The name matched _SCHEMA_NAME, so it is a plain identifier.
            await connection.execute(f"CREATE SCHEMA {self._schema}")
        await connection.execute(sql.CREATE_META)
        secret = await connection.fetchval(sql.GET_META, "token_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            await connection.execute(sql.SET_META, "token_secret", secret)
        self._secret = bytes.fromhex(secret)
        active = await connection.fetchval(sql.GET_META, "active_generation")
        self._active = 1 if active is None else int(active)
        if active is None:
            await connection.execute(sql.SET_META, "active_generation", "1")
        await _migrate(connection, self._active, create=active is None)
        for generation in await self._generations(connection):
            if generation != self._active:
                _log.info("dropping read-store generation %d left by a rebuild", generation)
                await _drop(connection, generation)

    async def _generations(self, connection: Any) -> list[int]:
        found = await connection.fetch(sql.LIST_TABLES, self._schema)
        return [g for row in found if (g := generation_of(row[0])) is not None]

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self._connect_ms / 1000):
                    await pool.close()
            except _CLOSE_ERRORS:
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL read store is closed")
        with translated():
            async with pool.acquire(timeout=self._connect_ms / 1000) as connection:
                yield connection

    @contextlib.asynccontextmanager
    async def _transaction(self, *, snapshot: bool = False) -> AsyncIterator[Any]:
        """Run a block in one transaction: READ COMMITTED, or a read-only snapshot."""
        async with self._connection() as connection:
            isolation = "repeatable_read" if snapshot else "read_committed"
            async with connection.transaction(isolation=isolation, readonly=snapshot):
                yield connection

    def _generation(self, generation: int | None) -> int:
        return self._active if generation is None else generation

    async def token_secret(self) -> bytes:
        """Return the key that signs page tokens and cursors."""
        assert self._secret, "open() first"
        return self._secret

    async def checkpoint(self, generation: int | None = None) -> int:
        """Return the generation's checkpoint."""
        async with self._connection() as connection:
            statement = sql.render(sql.CHECKPOINT, self._generation(generation))
            return int(await connection.fetchval(statement))

    async def accounts(
        self, account_ids: list[str], generation: int | None = None
    ) -> dict[str, AccountRow]:
        """Return the named accounts that exist, by id."""
        if not account_ids:
            return {}
        statement = sql.render(sql.ACCOUNTS_BY_ID, self._generation(generation))
        async with self._connection() as connection:
            found = await connection.fetch(statement, text_array(account_ids))
        return {row[0]: AccountRow(*row) for row in found}

    async def program_rules(self, generation: int | None = None) -> ProgramRulesRow | None:
        """Return the program's rules in force, or None before the first change."""
        statement = sql.render(sql.PROGRAM_RULES, self._generation(generation))
        async with self._connection() as connection:
            found = await connection.fetchrow(statement)
        return None if found is None else rows.program_rules_row(found)

    async def pending_issues(
        self, transfer_ids: list[str], generation: int | None = None
    ) -> dict[str, PendingIssueRow]:
        """Return the named issues that still have pending points, by transfer id."""
        if not transfer_ids:
            return {}
        statement = sql.render(sql.PENDING_ISSUES_BY_ID, self._generation(generation))
        async with self._connection() as connection:
            found = await connection.fetch(statement, transfer_ids)
        return {row[0]: rows.pending_issue_row(row) for row in found}

    async def in_flight(
        self, process_ids: list[str], generation: int | None = None
    ) -> dict[str, InFlightRow]:
        """Return the named points in flight that exist, by process id."""
        if not process_ids:
            return {}
        statement = sql.render(sql.IN_FLIGHT_BY_ID, self._generation(generation))
        async with self._connection() as connection:
            found = await connection.fetch(statement, process_ids)
        return {row[0]: rows.in_flight_row(row) for row in found}

    async def apply(self, changes: Changes, generation: int | None = None) -> None:
        """Write one batch and its checkpoint in one transaction."""
        changes.check()
        await run_to_end(self._apply(changes, self._generation(generation)))

    async def _apply(self, changes: Changes, number: int) -> None:
        async with self._transaction() as connection:
            status = await connection.execute(
                sql.render(sql.ADVANCE_CHECKPOINT, number),
                changes.after_position,
                changes.position,
                changes.events,
            )
            if status != "UPDATE 1":
                actual = await connection.fetchval(sql.render(sql.CHECKPOINT, number))
                raise CheckpointMoved(number, changes.after_position, actual)
            await _write_changes(connection, changes, number)

    async def list_accounts(
        self, account_filter: AccountFilter, after_account_id: str, limit: int
    ) -> list[AccountRow]:
        """Return up to `limit` matching accounts after `after_account_id`, ascending."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        parameters: list[Any] = [
            after_account_id,
            _list_or_none(account_filter.kinds),
            _list_or_none(account_filter.statuses),
            limit,
        ]
        statement = sql.LIST_ACCOUNTS
        if account_filter.owner_partner_id:
            statement = sql.LIST_OWNER_ACCOUNTS
            parameters.append(account_filter.owner_partner_id)
        async with self._connection() as connection:
            found = await connection.fetch(sql.render(statement, self._active), *parameters)
        return [AccountRow(*row) for row in found]

    async def history(
        self, account_id: str, history_filter: HistoryFilter, after_position: int, limit: int
    ) -> list[MovementRow]:
        """Return up to `limit` matching movements beyond `after_position`."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        descending = history_filter.newest_first
        statement = sql.HISTORY_DESCENDING if descending else sql.HISTORY_ASCENDING
        start = after_position if not descending or after_position else rows.POSITION_END
        async with self._connection() as connection:
            found = await connection.fetch(
                sql.render(statement, self._active),
                account_id,
                start,
                _list_or_none(history_filter.kinds),
                history_filter.start_us,
                history_filter.end_us,
                limit,
            )
        return [MovementRow(*row) for row in found]

    async def notifications(
        self, notification_filter: NotificationFilter, after: tuple[int, int], limit: int
    ) -> list[NotificationRow]:
        """Return up to `limit` matching notifications after `(position, index)`."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        parameters: list[Any] = [
            after[0],
            after[1],
            _list_or_none(notification_filter.account_ids),
            _list_or_none(notification_filter.kinds),
            limit,
        ]
        statement = sql.NOTIFICATIONS
        if notification_filter.owner_partner_id is not None:
            statement = sql.OWNER_NOTIFICATIONS
            parameters.append(notification_filter.owner_partner_id)
        async with self._connection() as connection:
            found = await connection.fetch(sql.render(statement, self._active), *parameters)
        return [rows.notification_row(row) for row in found]

    async def audit(self, listed_max: int) -> Audit:
        """Return the audit figures from one REPEATABLE READ snapshot."""
        generation = self._active
        ceiling = limits.points_balance_max
        async with self._transaction(snapshot=True) as connection:

            async def fetch(statement: str, *parameters: Any) -> list[Any]:
                return list(await connection.fetch(sql.render(statement, generation), *parameters))

            (
                (
                    position,
                    minted,
                    burned,
                    available,
                    held,
                    pending_points,
                    in_flight,
                    count,
                    expired,
                ),
            ) = await fetch(sql.AUDIT_SUMS)
            negative = await fetch(sql.AUDIT_NEGATIVE, listed_max)
            ((negative_count,),) = await fetch(sql.AUDIT_NEGATIVE_COUNT)
            over = await fetch(sql.AUDIT_OVER_CEILING, ceiling, listed_max)
            ((over_count,),) = await fetch(sql.AUDIT_OVER_CEILING_COUNT, ceiling)
            open_sell, pending_trade, escrow, escrow_count = await audit_market(fetch, listed_max)
        return Audit(
            position=int(position),
            minted_points=int(minted),
            burned_points=int(burned),
            expired_points=int(expired),
            available_points=int(available),
            held_points=int(held),
            pending_points=int(pending_points),
            in_flight_points=int(in_flight),
            account_count=int(count),
            negative=tuple(AccountRow(*row) for row in negative),
            negative_count=int(negative_count),
            over_ceiling=tuple(AccountRow(*row) for row in over),
            over_ceiling_count=int(over_count),
            open_sell_quantity_points=open_sell,
            pending_trade_quantity_points=pending_trade,
            escrow=escrow,
            escrow_count=escrow_count,
        )

    async def create_generation(self) -> int:
        """Create an empty generation numbered above every existing one."""
        async with self._transaction() as connection:
            await connection.execute(sql.TAKE_LOCK, MIGRATION_LOCK_KEY)
            generation = max([self._active, *await self._generations(connection)]) + 1
            await _migrate(connection, generation, create=True)
        return generation

    async def activate_generation(self, generation: int) -> int:
        """Make `generation` active (in the database and in this process); return the old one."""
        assert generation != self._active, generation
        async with self._transaction() as connection:
            await connection.execute(sql.SET_META, "active_generation", str(generation))
        previous, self._active = self._active, generation
        return previous

    async def drop_generation(self, generation: int) -> None:
        """Drop an inactive generation's tables."""
        assert generation != self._active, generation
        async with self._transaction() as connection:
            await _drop(connection, generation)

    async def count_differences(self, generation: int) -> int:
        """Return how many projection rows differ between `generation` and the active one."""
        total = 0
        async with self._transaction(snapshot=True) as connection:
            for table in PROJECTION_TABLES:
                statement = sql.COUNT_DIFFERENCES.format(
                    a=table_prefix(self._active), b=table_prefix(generation), table=table
                )
                total += int(await connection.fetchval(statement))
        return total


# How each of `ACCOUNT_COLUMNS` travels: an array literal of its type (pg_arrays).
_ACCOUNT_LITERALS: tuple[Callable[[Sequence[Any]], str], ...] = (
    *(text_array,) * 5,  # account_id, kind, status, owner_partner_id, display_name
    *(int_array,) * 3,  # available_points, held_points, version
    text_array,  # frozen_by_role
    *(int_array,) * 2,  # opened_at_us, updated_at_us
    text_array,  # tier
    *(int_array,) * 2,  # pending_points, debt_floor_points
)


async def _columns(
    connection: Any, statement: str, generation: int, values: Sequence[Sequence[Any]]
) -> None:
    """Run an array statement over rows' values, one array per column (none: nothing)."""
    if values:
        arrays = [list(column) for column in zip(*values, strict=True)]
        await connection.execute(sql.render(statement, generation), *arrays)


async def _copy(
    connection: Any, table: str, names: str, generation: int, records: list[tuple[Any, ...]]
) -> None:
    """Add rows to a table by binary COPY (none: nothing)."""
    if records:
        await connection.copy_records_to_table(
            sql.render(table, generation), records=records, columns=names.split(", ")
        )


async def _write_changes(connection: Any, changes: Changes, generation: int) -> None:
    """Write the rows of one batch, one statement per table (in the transaction).

    Rows that are only ever added (movements, notifications) go in by binary COPY; the others
    by one array statement each.
    """

    async def columns(statement: str, values: Sequence[Sequence[Any]]) -> None:
        await _columns(connection, statement, generation, values)

    if changes.accounts:
        accounts = zip(*(rows.account_values(a) for a in changes.accounts), strict=True)
        literals = [
            encode(column) for encode, column in zip(_ACCOUNT_LITERALS, accounts, strict=True)
        ]
        await connection.execute(sql.render(sql.UPSERT_ACCOUNTS, generation), *literals)
    movements = [rows.movement_values(m) for m in changes.movements]
    await _copy(connection, sql.MOVEMENTS_TABLE, sql.MOVEMENT_COLUMNS, generation, movements)
    notified = [rows.notification_values(n) for n in changes.notifications]
    await _copy(connection, sql.NOTIFICATIONS_TABLE, sql.NOTIFICATION_COLUMNS, generation, notified)
    # Removals first: a key the batch ended and started again is replaced, not duplicated.
    if changes.in_flight_removed:
        status = await connection.execute(
            sql.render(sql.DELETE_IN_FLIGHT, generation), list(changes.in_flight_removed)
        )
        if status != f"DELETE {len(changes.in_flight_removed)}":
            raise StoreError(f"read store lost in-flight rows: {changes.in_flight_removed}")
    await columns(sql.INSERT_IN_FLIGHT, [rows.in_flight_values(f) for f in changes.in_flight_added])
    totals = (changes.minted_points, changes.burned_points, changes.expired_points)
    if any(totals):
        await connection.execute(sql.render(sql.ADD_TOTALS, generation), *totals)
    if changes.program_rules is not None:
        await connection.execute(
            sql.render(sql.SET_PROGRAM_RULES, generation),
            *rows.program_rules_values(changes.program_rules),
        )
    await columns(
        sql.UPSERT_PENDING_ISSUES, [rows.pending_issue_values(i) for i in changes.pending_issues]
    )
    if changes.pending_issues_removed:
        status = await connection.execute(
            sql.render(sql.DELETE_PENDING_ISSUES, generation), list(changes.pending_issues_removed)
        )
        if status != f"DELETE {len(changes.pending_issues_removed)}":
            raise StoreError(f"read store lost pending issues: {changes.pending_issues_removed}")
    await write_market_changes(connection, changes, generation)


async def _migrate(connection: Any, generation: int, *, create: bool) -> None:
    """Apply the pending migrations of one generation (inside the caller's transaction)."""
    await connection.execute(sql.render(sql.CREATE_MIGRATIONS, generation))
    applied = (
        [] if create else await connection.fetch(sql.render(sql.SELECT_MIGRATIONS, generation))
    )
    for migration in pending_read_migrations(_MIGRATIONS, [row[0] for row in applied]):
        await connection.execute(render(migration, generation))
        await connection.execute(sql.render(sql.INSERT_MIGRATION, generation), migration.version)
        _log.info("applied read-store migration %s to generation %d", migration.name, generation)


async def _drop(connection: Any, generation: int) -> None:
    for table in GENERATION_TABLES:
        await connection.execute(sql.render(sql.DROP_TABLE.replace("{table}", table), generation))


def _list_or_none(values: tuple[str, ...]) -> list[str] | None:
    return list(values) if values else None
