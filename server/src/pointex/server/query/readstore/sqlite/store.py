"""Keep the read models in one SQLite file through aiosqlite (the embedded default).

One writer connection takes every write (the projections of the live feed and of a
rebuild), serialised by an asyncio lock and opened with BEGIN IMMEDIATE. A few reader
connections serve queries in parallel; in WAL mode they never wait for the writer. Every
statement of the adapter runs inside `translated`, so no sqlite3 error leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosqlite

from pointex.server import limits
from pointex.server.query.readstore import rows
from pointex.server.query.readstore.migrations import (
    PROJECTION_TABLES,
    generation_of,
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
from pointex.server.query.readstore.shielding import run_to_end
from pointex.server.query.readstore.sqlite import schema, sql
from pointex.server.query.readstore.sqlite.errors import DRIVER_ERRORS, translated
from pointex.server.query.readstore.sqlite.market import (
    SqliteMarketReads,
    audit_market,
    write_market_changes,
)
from pointex.server.store_errors import StoreError, StoreUnavailable
from pointex.server.store_migrations import load_migrations

_log = logging.getLogger(__name__)
_MIGRATIONS = load_migrations("pointex.server.query.readstore.sqlite")


class SqliteReadStore(SqliteMarketReads):
    """A `ReadStore` in a SQLite file (aiosqlite, WAL, synchronous=FULL)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_ms: int = limits.sqlite_busy_ms_max,
        read_connections: int = limits.sqlite_read_connections_max,
    ) -> None:
        """Configure the store; `open` connects.

        Args:
            path: The database file; created when missing. Never ``:memory:``: readers and
                the writer must share one database.
            busy_ms: Longest wait for another connection's lock.
            read_connections: Reader connections (queries run in parallel on them).
        """
        self._path = os.fspath(path)
        if self._path in {"", ":memory:"} or self._path.startswith("file:"):
            raise ValueError(f"the SQLite read store needs a file path: {path!r}")
        assert 1 <= busy_ms <= limits.sqlite_busy_ms_max, busy_ms
        assert 1 <= read_connections <= limits.sqlite_read_connections_max, read_connections
        self._busy_ms = busy_ms
        self._read_connections = read_connections
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue(read_connections)
        self._all_readers: list[aiosqlite.Connection] = []
        self._write_lock = asyncio.Lock()
        self._active = 0
        self._secret = b""

    async def open(self) -> None:
        """Connect, migrate the active generation and drop any other generation."""
        assert self._writer is None, "open() called twice"
        with translated():
            # aiosqlite leaves a worker thread behind when its connect fails; fail here first.
            await asyncio.to_thread(schema.probe_file, self._path)
        try:
            self._writer = await self._connect()
            await schema.switch_to_wal(self._writer)
            async with self._transaction() as writer:
                await self._set_up(writer)
            for _ in range(self._read_connections):
                reader = await self._connect()
                self._all_readers.append(reader)
                self._readers.put_nowait(reader)
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> aiosqlite.Connection:
        """Open one connection with every setting stated rather than left to defaults."""
        with translated():
            # isolation_level=None: the store issues BEGIN and COMMIT itself.
            connection = await aiosqlite.connect(self._path, isolation_level=None)
            try:
                await connection.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
                # FULL: a committed batch and its checkpoint survive a power loss together.
                await connection.execute("PRAGMA synchronous = FULL")
            except BaseException:
                await connection.close()
                raise
        return connection

    async def _set_up(self, writer: aiosqlite.Connection) -> None:
        """Create the meta table, pick or create the active generation, migrate, tidy up."""
        await writer.execute(sql.CREATE_META)
        secret = await schema.meta(writer, "token_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            await writer.execute(sql.SET_META, ("token_secret", secret))
        self._secret = bytes.fromhex(secret)
        active = await schema.meta(writer, "active_generation")
        if active is None:
            self._active = 1
            await writer.execute(sql.SET_META, ("active_generation", "1"))
        else:
            self._active = int(active)
        await schema.migrate(writer, self._active, create=active is None)
        for table in await writer.execute_fetchall(sql.LIST_TABLES):
            generation = generation_of(table[0])
            if generation is not None and generation != self._active:
                _log.info("dropping read-store generation %d left by a rebuild", generation)
                await schema.drop(writer, generation)

    async def close(self) -> None:
        """Close every connection."""
        connections = [*self._all_readers, self._writer]
        self._all_readers = []
        self._readers = asyncio.Queue(self._read_connections)
        self._writer = None
        for connection in connections:
            if connection is not None:
                try:
                    await connection.close()
                except DRIVER_ERRORS:
                    _log.warning("closing a SQLite connection failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run a block in one write transaction on the writer (BEGIN IMMEDIATE ... COMMIT)."""
        async with self._write_lock:
            writer = self._writer
            if writer is None:
                raise StoreUnavailable("the SQLite read store is closed")
            with translated():
                await writer.execute("BEGIN IMMEDIATE")
            try:
                with translated():
                    yield writer
                    await writer.execute("COMMIT")
            except BaseException:
                # A failed COMMIT can leave the transaction open; end it so the next BEGIN works.
                # A ROLLBACK that fails (nothing left to roll back) must not hide the cause.
                if writer.in_transaction:
                    with contextlib.suppress(*DRIVER_ERRORS):
                        await writer.execute("ROLLBACK")
                raise

    @contextlib.asynccontextmanager
    async def _reading(self, *, snapshot: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Lend a reader; with `snapshot`, every statement of the block sees one snapshot."""
        if not self._all_readers:
            raise StoreUnavailable("the SQLite read store is closed")
        reader = await self._readers.get()
        try:
            if snapshot:
                with translated():
                    await reader.execute("BEGIN")
            try:
                with translated():
                    yield reader
            finally:
                # A read-only transaction: COMMIT only ends the snapshot, and a failure to end
                # it must not hide the block's own outcome.
                if snapshot and reader.in_transaction:
                    with contextlib.suppress(*DRIVER_ERRORS):
                        await reader.execute("COMMIT")
        finally:
            self._readers.put_nowait(reader)

    def _generation(self, generation: int | None) -> int:
        return self._active if generation is None else generation

    async def token_secret(self) -> bytes:
        """Return the key that signs page tokens and cursors."""
        assert self._secret, "open() first"
        return self._secret

    async def checkpoint(self, generation: int | None = None) -> int:
        """Return the generation's checkpoint."""
        statement = sql.render(sql.CHECKPOINT, self._generation(generation))
        async with self._reading() as reader:
            ((position,),) = await reader.execute_fetchall(statement)
        return int(position)

    async def accounts(
        self, account_ids: list[str], generation: int | None = None
    ) -> dict[str, AccountRow]:
        """Return the named accounts that exist, by id."""
        if not account_ids:
            return {}
        statement = sql.render(sql.ACCOUNTS_BY_ID, self._generation(generation))
        async with self._reading() as reader:
            found = await reader.execute_fetchall(statement, (json.dumps(account_ids),))
        return {row[0]: AccountRow(*row) for row in found}

    async def program_rules(self, generation: int | None = None) -> ProgramRulesRow | None:
        """Return the program's rules in force, or None before the first change."""
        statement = sql.render(sql.PROGRAM_RULES, self._generation(generation))
        async with self._reading() as reader:
            found = list(await reader.execute_fetchall(statement))
        return rows.program_rules_row(found[0]) if found else None

    async def pending_issues(
        self, transfer_ids: list[str], generation: int | None = None
    ) -> dict[str, PendingIssueRow]:
        """Return the named issues that still have pending points, by transfer id."""
        if not transfer_ids:
            return {}
        statement = sql.render(sql.PENDING_ISSUES_BY_ID, self._generation(generation))
        async with self._reading() as reader:
            found = await reader.execute_fetchall(statement, (json.dumps(transfer_ids),))
        return {row[0]: rows.pending_issue_row(row) for row in found}

    async def in_flight(
        self, process_ids: list[str], generation: int | None = None
    ) -> dict[str, InFlightRow]:
        """Return the named points in flight that exist, by process id."""
        if not process_ids:
            return {}
        statement = sql.render(sql.IN_FLIGHT_BY_ID, self._generation(generation))
        async with self._reading() as reader:
            found = await reader.execute_fetchall(statement, (json.dumps(process_ids),))
        return {row[0]: rows.in_flight_row(row) for row in found}

    async def apply(self, changes: Changes, generation: int | None = None) -> None:
        """Write one batch and its checkpoint in one transaction."""
        changes.check()
        await run_to_end(self._apply(changes, self._generation(generation)))

    async def _apply(self, changes: Changes, number: int) -> None:
        async with self._transaction() as writer:
            cursor = await writer.execute(
                sql.render(sql.ADVANCE_CHECKPOINT, number),
                (changes.after_position, changes.position, changes.events),
            )
            if cursor.rowcount != 1:
                ((actual,),) = await writer.execute_fetchall(sql.render(sql.CHECKPOINT, number))
                raise CheckpointMoved(number, changes.after_position, int(actual))
            await _write_changes(writer, changes, number)

    async def list_accounts(
        self, account_filter: AccountFilter, after_account_id: str, limit: int
    ) -> list[AccountRow]:
        """Return up to `limit` matching accounts after `after_account_id`, ascending."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        parameters: list[Any] = [
            after_account_id,
            _json_or_none(account_filter.kinds),
            _json_or_none(account_filter.statuses),
            limit,
        ]
        statement = sql.LIST_ACCOUNTS
        if account_filter.owner_partner_id:
            statement = sql.LIST_OWNER_ACCOUNTS
            parameters.append(account_filter.owner_partner_id)
        async with self._reading() as reader:
            found = await reader.execute_fetchall(sql.render(statement, self._active), parameters)
        return [AccountRow(*row) for row in found]

    async def history(
        self, account_id: str, history_filter: HistoryFilter, after_position: int, limit: int
    ) -> list[MovementRow]:
        """Return up to `limit` matching movements beyond `after_position`."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        descending = history_filter.newest_first
        statement = sql.HISTORY_DESCENDING if descending else sql.HISTORY_ASCENDING
        start = after_position if not descending or after_position else rows.POSITION_END
        parameters = (
            account_id,
            start,
            _json_or_none(history_filter.kinds),
            history_filter.start_us,
            history_filter.end_us,
            limit,
        )
        async with self._reading() as reader:
            found = await reader.execute_fetchall(sql.render(statement, self._active), parameters)
        return [MovementRow(*row) for row in found]

    async def notifications(
        self, notification_filter: NotificationFilter, after: tuple[int, int], limit: int
    ) -> list[NotificationRow]:
        """Return up to `limit` matching notifications after `(position, index)`."""
        assert 1 <= limit <= limits.read_page_items_max + 1, limit
        parameters: list[Any] = [
            after[0],
            after[1],
            _json_or_none(notification_filter.account_ids),
            _json_or_none(notification_filter.kinds),
            limit,
        ]
        statement = sql.NOTIFICATIONS
        if notification_filter.owner_partner_id is not None:
            statement = sql.OWNER_NOTIFICATIONS
            parameters.append(notification_filter.owner_partner_id)
        async with self._reading() as reader:
            found = await reader.execute_fetchall(sql.render(statement, self._active), parameters)
        return [rows.notification_row(row) for row in found]

    async def audit(self, listed_max: int) -> Audit:
        """Return the audit figures from one read snapshot."""
        generation = self._active
        ceiling = limits.points_balance_max

        async def fetch(statement: str, *parameters: Any) -> list[Any]:
            return list(
                await reader.execute_fetchall(sql.render(statement, generation), parameters)
            )

        async with self._reading(snapshot=True) as reader:
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
            negative = await fetch(sql.AUDIT_NEGATIVE, ceiling, listed_max)
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
        async with self._transaction() as writer:
            newest = max(
                [self._active]
                + [
                    g
                    for (name,) in await writer.execute_fetchall(sql.LIST_TABLES)
                    if (g := generation_of(name)) is not None
                ]
            )
            generation = newest + 1
            await schema.migrate(writer, generation, create=True)
        return generation

    async def activate_generation(self, generation: int) -> int:
        """Make `generation` active (in the file and in this process); return the old one."""
        assert generation != self._active, generation
        async with self._transaction() as writer:
            await writer.execute(sql.SET_META, ("active_generation", str(generation)))
        previous, self._active = self._active, generation
        return previous

    async def drop_generation(self, generation: int) -> None:
        """Drop an inactive generation's tables."""
        assert generation != self._active, generation
        async with self._transaction() as writer:
            await schema.drop(writer, generation)

    async def count_differences(self, generation: int) -> int:
        """Return how many projection rows differ between `generation` and the active one."""
        total = 0
        async with self._reading(snapshot=True) as reader:
            for table in PROJECTION_TABLES:
                statement = sql.COUNT_DIFFERENCES.format(
                    a=table_prefix(self._active), b=table_prefix(generation), table=table
                )
                ((count,),) = await reader.execute_fetchall(statement)
                total += int(count)
        return total


async def _write_changes(writer: aiosqlite.Connection, changes: Changes, generation: int) -> None:
    """Insert and update the rows of one batch (inside the caller's transaction)."""

    async def many(statement: str, values: Sequence[Sequence[Any]]) -> int:
        if not values:
            return 0
        cursor = await writer.executemany(sql.render(statement, generation), values)
        return int(cursor.rowcount)

    await many(sql.UPSERT_ACCOUNT, [rows.account_values(a) for a in changes.accounts])
    await many(sql.INSERT_MOVEMENT, [rows.movement_values(m) for m in changes.movements])
    await many(
        sql.INSERT_NOTIFICATION, [rows.notification_values(n) for n in changes.notifications]
    )
    # Removals first: a key the batch ended and started again is replaced, not duplicated.
    removed = await many(sql.DELETE_IN_FLIGHT, [(p,) for p in changes.in_flight_removed])
    if removed != len(changes.in_flight_removed):
        raise StoreError(f"read store lost in-flight rows: {changes.in_flight_removed}")
    await many(sql.INSERT_IN_FLIGHT, [rows.in_flight_values(f) for f in changes.in_flight_added])
    totals = (changes.minted_points, changes.burned_points, changes.expired_points)
    if any(totals):
        await writer.execute(sql.render(sql.ADD_TOTALS, generation), totals)
    if changes.program_rules is not None:
        await writer.execute(
            sql.render(sql.SET_PROGRAM_RULES, generation),
            rows.program_rules_values(changes.program_rules),
        )
    await many(
        sql.UPSERT_PENDING_ISSUE, [rows.pending_issue_values(i) for i in changes.pending_issues]
    )
    ended = await many(sql.DELETE_PENDING_ISSUE, [(t,) for t in changes.pending_issues_removed])
    if ended != len(changes.pending_issues_removed):
        raise StoreError(f"read store lost pending issues: {changes.pending_issues_removed}")
    await write_market_changes(writer, changes, generation)


def _json_or_none(values: tuple[str, ...]) -> str | None:
    return json.dumps(list(values)) if values else None
