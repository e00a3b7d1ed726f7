"""Write group commits to the PostgreSQL event store.

Every batch can go as one transaction under the position lock (`POSITION_LOCK_KEY`): take
the lock, read the head and the versions of the batch's streams, plan, insert, COMMIT: five
round trips, and the plan tells each unit's conflict. A large batch goes instead as one
call of `append_events` (migration 0002), planned on the versions its units expect, which
waits for the lock in the database and writes nothing unless every version is as planned;
the batch then takes the transaction. The insert guard checks the lock and the positions on
either path (docs/benchmarks.md has the measurements behind both).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from pointex.server import limits
from pointex.server.eventstore.planning import (
    BatchPlan,
    Placement,
    conflicts,
    expected_versions,
    placed,
    placement,
    stream_ids_of,
)
from pointex.server.eventstore.port import (
    BeforeCommit,
    FencedOff,
    StreamAppend,
)
from pointex.server.eventstore.postgres import sql
from pointex.server.eventstore.postgres.errors import DRIVER_ERRORS, translate, translated
from pointex.server.pg_arrays import int_array, text_array

# "pointex" in ASCII, then 01. The migrations' insert guard names the same number.
POSITION_LOCK_KEY = 0x706F696E74657801

# Lends a pooled connection, translating driver errors raised meanwhile.
Lender = Callable[[], AbstractAsyncContextManager[Any]]


class Appender:
    """The write side of one store: appends, each in one call or one locked transaction."""

    def __init__(self, connection: Lender, before_commit: BeforeCommit | None) -> None:
        """Write through connections from `connection`; run `before_commit` before COMMIT."""
        self._connection = connection
        self._before_commit = before_commit
        # One locked transaction of this process waits for the position lock; the others
        # wait here, so they do not hold pooled connections that readers need.
        self._lock = asyncio.Lock()
        # The epoch of each slice range this writer holds a lease on (leases.py).
        self._epochs: Callable[[], Sequence[int]] | None = None
        self._on_fenced: Callable[[], None] = _nothing

    def carry_epochs(
        self, epochs: Callable[[], Sequence[int]], on_fenced: Callable[[], None]
    ) -> None:
        """Write every event at `epochs()[r]` for its slice range r (0: no lease held).

        Read at each append; until this is called, every event is at epoch 0. `on_fenced` is
        called whenever the database refuses an append by its epochs (`FencedOff`).
        """
        self._epochs = epochs
        self._on_fenced = on_fenced

    async def write(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
        """Append a batch (see `_write`); tell `on_fenced` when the epochs refuse it."""
        try:
            return await self._write(units)
        except FencedOff:
            self._on_fenced()
            raise

    async def _write(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
        """Append a large batch in one call if its versions hold, else in a transaction.

        The units of a group commit were decided on the versions their actors expect, so a
        large batch is planned on them and sent in one round trip (`sql.APPEND_EVENTS`), which
        waits for the position lock in the database when another writer holds it. Small batches
        (limits.append_one_statement_events_min), a batch whose versions did not hold, and
        every batch of a store with a before-commit hook (which runs inside the transaction)
        take the locked transaction.
        """
        if self._before_commit is None and _is_large(units):
            plan = await self._append_expected(units)
            if plan is not None:
                return plan
        async with self._lock:
            return await self._write_locked(units)

    async def _append_expected(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan | None:
        """Append a batch planned on its units' expected versions, if they hold.

        Returns None, having written nothing, when they do not.
        """
        expected = expected_versions(units)
        outcomes = conflicts(units, expected)
        going_in = placement(units, outcomes)
        async with self._connection() as connection:
            try:
                inserted, head, now_us = await connection.fetchrow(
                    sql.APPEND_EVENTS,
                    *_columns(going_in),
                    text_array(list(expected)),
                    int_array(list(expected.values())),
                    self._epochs_literal(),
                )
            except asyncpg.IntegrityConstraintViolationError:
                return None  # Another writer gave a stream version first.
            except DRIVER_ERRORS as error:
                # The statement is its own transaction: it may have committed.
                raise translate(error, during_commit=True) from error
        if inserted == 0:
            return None
        assert inserted == going_in.count, (inserted, going_in.count)
        # The rows are built once, at the head and with the clock the call recorded.
        return placed(units, outcomes, head, now_us, going_in)

    async def _write_locked(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
        """Run one appending transaction under the position lock; return its plan.

        COMMIT failures are reported as outcome unknown.
        """
        async with self._connection() as connection:
            # READ COMMITTED, stated rather than taken from the server's default: each
            # statement after the lock must take a fresh snapshot (see _plan_and_insert).
            transaction = connection.transaction(isolation="read_committed")
            await transaction.start()
            try:
                plan = await self._plan_and_insert(connection, units)
                if self._before_commit is not None and plan.rows:
                    await self._before_commit(plan.rows)
            except BaseException:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await transaction.rollback()
                raise
            with translated(during_commit=True):
                await transaction.commit()
        return plan

    async def _plan_and_insert(
        self, connection: Any, units: Sequence[Sequence[StreamAppend]]
    ) -> BatchPlan:
        """Take the position lock, check versions and insert the batch's rows."""
        await connection.execute(sql.TAKE_LOCK, POSITION_LOCK_KEY)
        # A separate statement after the lock: under READ COMMITTED it takes a new snapshot,
        # which includes the commit of the lock's previous holder.
        stream_ids = stream_ids_of(units)
        head, now_us, versions = await connection.fetchrow(
            sql.HEAD_CLOCK_VERSIONS, text_array(stream_ids)
        )
        outcomes = conflicts(units, dict(zip(stream_ids, versions, strict=True)))
        going_in = placement(units, outcomes)
        if going_in.count:
            await connection.execute(
                sql.INSERT_EVENTS, head + 1, *_columns(going_in), now_us, self._epochs_literal()
            )
        return placed(units, outcomes, head, now_us, going_in)

    def _epochs_literal(self) -> str:
        """Return the epochs this writer's events carry, as the statements take them."""
        return "{}" if self._epochs is None else int_array(self._epochs())


def _nothing() -> None:
    """Do nothing: what a writer without leases does when fenced off (it never is)."""


def _is_large(units: Sequence[Sequence[StreamAppend]]) -> bool:
    """Tell whether a batch has enough events to go as one call."""
    events = 0
    for unit in units:
        for append in unit:
            events += len(append.events)
            if events >= limits.append_one_statement_events_min:
                return True
    return False


def _columns(going_in: Placement) -> tuple[Any, ...]:
    """Return the rows that go in, as `sql._ROWS` takes them: one array per column."""
    return (
        text_array(going_in.stream_ids),
        int_array(going_in.versions),
        int_array(going_in.slices),
        text_array(going_in.types),
        int_array(going_in.schema_versions),
        going_in.data,
        going_in.metadata,
    )
