"""Write group commits to the PostgreSQL event store, one batch at a time.

Every batch goes as one transaction under the position lock (`POSITION_LOCK_KEY`): take the
lock, read the head and the versions of the batch's streams, plan, insert, COMMIT. A large
batch's rows go by binary COPY rather than by an INSERT of arrays: the driver encodes each
row in its compiled code, where the arrays' columns were built and quoted in Python, and the
database parses no literals (docs/benchmarks.md has the measurements behind it). COPY fires
the insert guard as INSERT does, so the database holds it to the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from pointex.server import limits
from pointex.server.eventstore.planning import (
    BatchPlan,
    conflicts,
    placed,
    stream_ids_of,
)
from pointex.server.eventstore.port import (
    BeforeCommit,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
    stream_category,
    stream_slice,
)
from pointex.server.eventstore.postgres import sql
from pointex.server.eventstore.postgres.errors import DRIVER_ERRORS, translated

# "pointex" in ASCII, then 01. The migrations' insert guard names the same number.
POSITION_LOCK_KEY = 0x706F696E74657801

# Lends a pooled connection, translating driver errors raised meanwhile.
Lender = Callable[[], AbstractAsyncContextManager[Any]]


class Appender:
    """The write side of one store: batches one at a time."""

    def __init__(self, connection: Lender, before_commit: BeforeCommit | None) -> None:
        """Write through connections from `connection`; run `before_commit` before COMMIT."""
        self._connection = connection
        self._before_commit = before_commit
        # One batch of this process waits for the position lock; the others wait here, so
        # they do not hold pooled connections that readers need.
        self._lock = asyncio.Lock()

    async def write(self, units: Sequence[Sequence[StreamAppend]]) -> BatchPlan:
        """Run one appending transaction under the position lock; return its plan.

        COMMIT failures are reported as outcome unknown.
        """
        async with self._lock, self._connection() as connection:
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
        if is_large(units):
            plan = placed(units, outcomes, head, now_us)
            if plan.rows:
                await connection.copy_records_to_table(
                    "events", columns=sql.COPY_COLUMNS, records=copy_records(plan.rows)
                )
            return plan
        columns, count = _columns(units, outcomes, head + 1)
        if count:
            await connection.execute(sql.INSERT_EVENTS, *columns, now_us)
        return placed(units, outcomes, head, now_us)


def is_large(units: Sequence[Sequence[StreamAppend]]) -> bool:
    """Tell whether a batch has enough events to go by COPY."""
    events = 0
    for unit in units:
        for append in unit:
            events += len(append.events)
            if events >= limits.append_copy_events_min:
                return True
    return False


def copy_records(rows: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
    """Return the rows as `sql.COPY_COLUMNS` takes them: each recorded event, then its category.

    The category goes last so that each record is the row's own tuple extended by one item,
    which concatenation builds faster than unpacking (149 against 226 ns a row, timeit).
    """
    return [row + (stream_category(row.stream_id),) for row in rows]  # noqa: RUF005


def _columns(
    units: Sequence[Sequence[StreamAppend]],
    outcomes: Sequence[WrongExpectedVersion | None],
    first_position: int,
) -> tuple[tuple[Any, ...], int]:
    """Return the rows of the units that go in, as `sql._ROWS` takes them, and their count."""
    stream_ids: list[str] = []
    versions: list[int] = []
    slices: list[int] = []
    types: list[str] = []
    schema_versions: list[int] = []
    data: list[bytes] = []
    metadata: list[bytes] = []
    for unit, conflict in zip(units, outcomes, strict=True):
        if conflict is not None:
            continue
        for append in unit:
            stream_id = append.stream_id
            slice_ = stream_slice(stream_id)
            version = append.expected_version
            for event in append.events:
                version += 1
                stream_ids.append(stream_id)
                versions.append(version)
                slices.append(slice_)
                types.append(event.type)
                schema_versions.append(event.schema_version)
                data.append(event.data)
                metadata.append(event.metadata)
    columns = (
        first_position,
        text_array(stream_ids),
        int_array(versions),
        int_array(slices),
        text_array(types),
        int_array(schema_versions),
        data,
        metadata,
    )
    return columns, len(stream_ids)


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
