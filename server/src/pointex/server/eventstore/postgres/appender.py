"""Write group commits to the PostgreSQL event store, one batch at a time.

Every batch can go as one transaction under the position lock (`POSITION_LOCK_KEY`): take
the lock, read the head and the versions of the batch's streams, plan, insert, COMMIT. A
large batch whose writer knows the head (its own last append) may instead go as one
statement planned before it is sent (`sql.INSERT_EXPECTED`), which writes nothing unless the
head and every stream version are as planned; the insert guard takes the lock for it, so
the same rules hold on either path (docs/benchmarks.md has the measurements behind it).
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
    StreamAppend,
)
from pointex.server.eventstore.postgres import sql
from pointex.server.eventstore.postgres.errors import DRIVER_ERRORS, translate, translated

# "pointex" in ASCII, then 01. The migrations' insert guard names the same number.
POSITION_LOCK_KEY = 0x706F696E74657801

# Lends a pooled connection, translating driver errors raised meanwhile.
Lender = Callable[[], AbstractAsyncContextManager[Any]]


class Appender:
    """The write side of one store: batches one at a time, and the head after the last."""

    def __init__(self, connection: Lender, before_commit: BeforeCommit | None) -> None:
        """Write through connections from `connection`; run `before_commit` before COMMIT."""
        self._connection = connection
        self._before_commit = before_commit
        # One batch of this process waits for the position lock; the others wait here, so
        # they do not hold pooled connections that readers need.
        self._lock = asyncio.Lock()
        # The head position after this store's last append, while no other writer is known
        # to have appended since; None when unknown.
        self._head: int | None = None

    async def write(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
        """Append a large batch in one statement when the head is known, else in a transaction.

        The single writer of a store knows the head (its own last append) and the versions
        its actors expect, so a large batch is planned before it is sent and inserted in one
        round trip (`sql.INSERT_EXPECTED`). When that does not hold (the first batch, another
        writer, a conflict), for small batches (limits.append_one_statement_events_min) and
        on a store with a before-commit hook (which runs inside the transaction), the batch
        takes the locked transaction.
        """
        async with self._lock:
            head, self._head = self._head, None  # Unknown until this write ends well.
            if head is not None and self._before_commit is None and _is_large(units):
                plan = await self._insert_expected(units, head)
                if plan is not None:
                    self._head = plan.rows[-1].position
                    return plan
            plan, self._head = await self._write_locked(units)
            return plan

    async def _insert_expected(
        self, units: Sequence[Sequence[StreamAppend]], head: int
    ) -> BatchPlan | None:
        """Insert a batch planned on `head` and its units' expected versions, if they hold.

        Returns None, having written nothing, when they do not or another writer raced.
        """
        expected = expected_versions(units)
        outcomes = conflicts(units, expected)
        going_in = placement(units, outcomes)
        count = len(going_in.events)
        async with self._connection() as connection:
            try:
                inserted, now_us = await connection.fetchrow(
                    sql.INSERT_EXPECTED,
                    *_columns(going_in, head + 1),
                    text_array(list(expected)),
                    int_array(list(expected.values())),
                    head,
                )
            except (asyncpg.IntegrityConstraintViolationError, asyncpg.LockNotAvailableError):
                return None  # Another writer came first or holds the lock.
            except DRIVER_ERRORS as error:
                # The statement is its own transaction: it may have committed.
                raise translate(error, during_commit=True) from error
        if inserted == 0:
            return None
        assert inserted == count, (inserted, count)
        # The rows are built once, with the clock the statement recorded.
        return placed(units, outcomes, head, now_us, going_in)

    async def _write_locked(self, units: Sequence[Sequence[StreamAppend]]) -> tuple[BatchPlan, int]:
        """Run one appending transaction under the position lock; return the plan and head.

        COMMIT failures are reported as outcome unknown.
        """
        async with self._connection() as connection:
            # READ COMMITTED, stated rather than taken from the server's default: each
            # statement after the lock must take a fresh snapshot (see _plan_and_insert).
            transaction = connection.transaction(isolation="read_committed")
            await transaction.start()
            try:
                plan, head = await self._plan_and_insert(connection, units)
                if self._before_commit is not None and plan.rows:
                    await self._before_commit(plan.rows)
            except BaseException:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await transaction.rollback()
                raise
            with translated(during_commit=True):
                await transaction.commit()
        return plan, head

    async def _plan_and_insert(
        self, connection: Any, units: Sequence[Sequence[StreamAppend]]
    ) -> tuple[BatchPlan, int]:
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
        count = len(going_in.events)
        if count:
            await connection.execute(sql.INSERT_EVENTS, *_columns(going_in, head + 1), now_us)
        return placed(units, outcomes, head, now_us, going_in), head + count


def _is_large(units: Sequence[Sequence[StreamAppend]]) -> bool:
    """Tell whether a batch has enough events to go as one statement."""
    events = 0
    for unit in units:
        for append in unit:
            events += len(append.events)
            if events >= limits.append_one_statement_events_min:
                return True
    return False


def _columns(going_in: Placement, first_position: int) -> tuple[Any, ...]:
    """Return the rows that go in, as `sql._ROWS` takes them: one array per column."""
    types, schema_versions, data, metadata = going_in.columns()
    return (
        first_position,
        text_array(going_in.stream_ids),
        int_array(going_in.versions),
        int_array(going_in.slices),
        text_array(types),
        int_array(schema_versions),
        data,
        metadata,
    )


def int_array(values: Sequence[int]) -> str:
    """Return a PostgreSQL array literal of integers ("{1,2,3}")."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Sequence[str]) -> str:
    """Return a PostgreSQL array literal of strings, each quoted ('{"a","b"}').

    Quoted, a string cannot be taken for NULL or split at a comma; a backslash or a double
    quote in it is escaped.
    """
    return "{" + ",".join(f'"{_escaped(value)}"' for value in values) + "}"


def _escaped(value: str) -> str:
    if "\\" in value or '"' in value:
        return value.replace("\\", "\\\\").replace('"', '\\"')
    return value
