"""An event store in memory, with faults a seed decides: the simulation's database.

`MemoryDatabase` is what a database server keeps (events, stream versions, snapshots) and
outlives every `MemoryEventStore` opened on it, as a database outlives the command servers
that crash on top of it. A store implements the `EventStore` protocol exactly as the SQLite
and PostgreSQL stores do (the contract suite runs on it, tests/contract/conftest.py): gap-free
positions in commit order, expected versions per stream, all-or-nothing units, one snapshot
per stream, and a feed that delivers every commit once.

It takes no thread and no real time, so it can run under the simulation's virtual clock
(tests/simulation/loop.py). Its `Faults` decide, append by append, what a real database and
network would: a round trip's duration, an append that fails before COMMIT (nothing
written, `StoreUnavailable`) or whose COMMIT succeeded but whose answer was lost
(`CommitOutcomeUnknown`), a read that fails, and whether a transaction cut by its caller's
death reached COMMIT. `Fault.LOSE` is a broken store that acknowledges a commit and keeps
nothing: it exists to prove that the simulation's checks catch such a store.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from pointex.server import limits
from pointex.server.eventstore.feed import AppendSignal, follow
from pointex.server.eventstore.planning import (
    BatchPlan,
    assert_valid_snapshot,
    assert_valid_units,
    plan_batch,
    stream_ids_of,
)
from pointex.server.eventstore.port import (
    BeforeCommit,
    CommitOutcomeUnknown,
    RecordedEvent,
    Snapshot,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
)

# The memory store has no migrations; it reports the first schema version.
SCHEMA_VERSION = 1


class Fault(enum.Enum):
    """What happens to one append."""

    NONE = "none"  # It commits and its caller hears so.
    BEFORE_COMMIT = "before-commit"  # The connection drops before COMMIT: nothing written.
    AFTER_COMMIT = "after-commit"  # COMMIT succeeded, the answer was lost: outcome unknown.
    LOSE = "lose"  # A broken store: acknowledged, and not kept (the checks must notice).


class Faults:
    """No fault and no delay: a store as the contract suite expects it."""

    def append_fault(self, units: Sequence[Sequence[StreamAppend]]) -> Fault:
        """Return what happens to the next append, of `units`."""
        del units
        return Fault.NONE

    def read_fails(self) -> bool:
        """Tell whether the next read (or snapshot write) fails with StoreUnavailable."""
        return False

    def delay_s(self, *, write: bool) -> float:
        """Return how long the next round trip takes, in seconds (0: it does not yield)."""
        del write
        return 0.0

    def commits_when_cut(self) -> bool:
        """Tell whether a transaction whose caller died during its COMMIT was committed."""
        return False


def spare_none(_units: Sequence[Sequence[StreamAppend]]) -> bool:
    """Spare no batch: every fault may strike any commit."""
    return False


@dataclass
class SeededFaults(Faults):
    """Faults drawn from one generator, at rates the simulation changes as it runs.

    Attributes:
        draw: The generator every decision comes from, in call order.
        fail_before: Chance that an append fails before COMMIT.
        fail_after: Chance that an append's outcome is unknown (committed, answer lost).
        fail_read: Chance that a read fails.
        lose: Chance that an append is acknowledged and not kept (a broken store).
        write_ms_max: Longest round trip of an append, in (virtual) milliseconds.
        read_ms_max: Longest round trip of a read.
        spared: Batches whose COMMIT answer is never lost (their AFTER_COMMIT fault fails
            before COMMIT instead): a way to keep a known bug out of a run.
        injected: How many faults were injected so far.
        answers_lost: How many of them were commits whose answer was lost (AFTER_COMMIT).
    """

    draw: random.Random
    fail_before: float = 0.0
    fail_after: float = 0.0
    fail_read: float = 0.0
    lose: float = 0.0
    write_ms_max: float = 0.0
    read_ms_max: float = 0.0
    spared: Callable[[Sequence[Sequence[StreamAppend]]], bool] = spare_none
    injected: int = 0
    answers_lost: int = 0

    def heal(self) -> None:
        """Stop every fault (delays stay): the database and its network are healthy again."""
        self.fail_before = self.fail_after = self.fail_read = self.lose = 0.0

    def append_fault(self, units: Sequence[Sequence[StreamAppend]]) -> Fault:
        """Draw what happens to the next append, of `units`."""
        roll = self.draw.random()
        for fault, rate in (
            (Fault.BEFORE_COMMIT, self.fail_before),
            (Fault.AFTER_COMMIT, self.fail_after),
            (Fault.LOSE, self.lose),
        ):
            if roll < rate:
                self.injected += 1
                if fault is Fault.AFTER_COMMIT:
                    if self.spared(units):
                        return Fault.BEFORE_COMMIT
                    self.answers_lost += 1
                return fault
            roll -= rate
        return Fault.NONE

    def read_fails(self) -> bool:
        """Draw whether the next read fails."""
        failed = self.fail_read > 0 and self.draw.random() < self.fail_read
        self.injected += failed
        return failed

    def delay_s(self, *, write: bool) -> float:
        """Draw the next round trip's duration."""
        ms_max = self.write_ms_max if write else self.read_ms_max
        return self.draw.uniform(0, ms_max) / 1000 if ms_max > 0 else 0.0

    def commits_when_cut(self) -> bool:
        """Draw whether a cut transaction had reached COMMIT."""
        return self.draw.random() < 0.5


@dataclass
class MemoryDatabase:
    """What the database keeps: the log, each stream's events, the snapshots.

    `commit_ends` holds the last position of every commit, so that a checker can look at
    the log at each commit boundary (a unit is never split across two).
    """

    events: list[RecordedEvent] = field(default_factory=list)
    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    commit_ends: list[int] = field(default_factory=list)
    # One writer at a time, as PostgreSQL's position lock and SQLite's write lock make it.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    signal: AppendSignal = field(default_factory=AppendSignal)

    def versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Return the version of each stream that exists."""
        return {s: len(self.streams[s]) for s in stream_ids if s in self.streams}

    def commit(self, rows: Sequence[RecordedEvent]) -> None:
        """Keep a planned transaction's rows (positions follow the head: checked)."""
        for row in rows:
            assert row.position == len(self.events) + 1, (row.position, len(self.events))
            stream = self.streams.setdefault(row.stream_id, [])
            assert row.stream_version == len(stream) + 1, row
            stream.append(row)
            self.events.append(row)
        if rows:
            self.commit_ends.append(rows[-1].position)
            self.signal.fire()


def _wall_clock_us() -> int:
    """Return the wall clock in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


class MemoryEventStore:
    """An `EventStore` over a `MemoryDatabase`, with `Faults` on every round trip."""

    def __init__(
        self,
        database: MemoryDatabase,
        *,
        faults: Faults | None = None,
        clock_us: Callable[[], int] = _wall_clock_us,
        subscribe_idle_ms: int = limits.subscribe_idle_ms_max,
        before_commit: BeforeCommit | None = None,
    ) -> None:
        """Configure a store on `database`; `open` makes it usable.

        Args:
            database: The database; several stores may share one (several connections).
            faults: What goes wrong, and how long round trips take; None: nothing, at once.
            clock_us: The time recorded with each event, in Unix microseconds.
            subscribe_idle_ms: Longest sleep of a caught-up subscriber without a wake-up.
            before_commit: Test hook run inside each append, before COMMIT.
        """
        self._db = database
        self._faults = faults or Faults()
        self._clock_us = clock_us
        self._subscribe_idle_ms = subscribe_idle_ms
        self._before_commit = before_commit
        self._open = False

    async def open(self) -> None:
        """Make the store usable (there is nothing to connect or migrate)."""
        self._open = True

    async def close(self) -> None:
        """Make the store unusable; the database keeps everything."""
        self._open = False

    async def schema_version(self) -> int:
        """Return the schema version (always the first: there are no migrations)."""
        await self._round_trip()
        return SCHEMA_VERSION

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
        self._require_open()
        async with self._db.lock:
            fault = self._faults.append_fault(units)
            plan = plan_batch(
                units,
                self._db.versions(stream_ids_of(units)),
                len(self._db.events),
                self._clock_us(),
            )
            if self._before_commit is not None and plan.rows:
                await self._before_commit(plan.rows)
            await self._commit_round_trip(plan, fault)
        if fault is Fault.AFTER_COMMIT:
            raise CommitOutcomeUnknown("injected: the connection was lost during COMMIT")
        return plan.results

    async def _commit_round_trip(self, plan: BatchPlan, fault: Fault) -> None:
        """Send COMMIT and wait for its answer; keep the rows unless `fault` says otherwise.

        A caller cancelled meanwhile (its process died) leaves the transaction committed or
        not, as the faults decide: the database may or may not have received the COMMIT.
        """
        delay_s = self._faults.delay_s(write=True)
        try:
            if delay_s:
                await asyncio.sleep(delay_s)
        except asyncio.CancelledError:
            if fault in {Fault.NONE, Fault.AFTER_COMMIT} and self._faults.commits_when_cut():
                self._db.commit(plan.rows)
            raise
        if fault is Fault.BEFORE_COMMIT:
            raise StoreUnavailable("injected: the connection dropped before COMMIT")
        if fault is not Fault.LOSE:
            self._db.commit(plan.rows)

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Return the version of each stream in one read, 0 for a stream that does not exist."""
        await self._round_trip()
        found = self._db.versions(stream_ids)
        return {stream_id: found.get(stream_id, 0) for stream_id in stream_ids}

    async def stream_version(self, stream_id: str) -> int:
        """Return the version of a stream's last event, 0 if the stream does not exist."""
        versions = await self.stream_versions([stream_id])
        return versions[stream_id]

    async def read_stream(
        self, stream_id: str, from_version: int = 1, limit: int = limits.read_batch_events_max
    ) -> list[RecordedEvent]:
        """Return up to ``limit`` events of a stream from ``from_version``, in version order."""
        assert from_version >= 1, from_version
        assert 1 <= limit <= limits.read_batch_events_max, limit
        await self._round_trip()
        stream = self._db.streams.get(stream_id, [])
        return stream[from_version - 1 : from_version - 1 + limit]

    async def read_stream_starts(
        self, stream_ids: Sequence[str], count: int
    ) -> dict[str, list[RecordedEvent]]:
        """Return the first ``count`` events of each stream, in version order, in one read."""
        assert len(stream_ids) <= limits.read_starts_streams_max, len(stream_ids)
        await self._round_trip()
        return {s: self._db.streams[s][:count] for s in stream_ids if self._db.streams.get(s)}

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        """Return up to ``limit`` events with a position above ``after_position``, ascending."""
        assert after_position >= 0, after_position
        assert 1 <= limit <= limits.read_batch_events_max, limit
        await self._round_trip()
        return self._db.events[after_position : after_position + limit]

    async def head_position(self) -> int:
        """Return the highest committed position, 0 if the log is empty."""
        await self._round_trip()
        return len(self._db.events)

    def subscribe(self, after_position: int) -> AsyncIterator[RecordedEvent]:
        """Yield every event after ``after_position``: catch-up, then live, each once."""
        return follow(
            self.read_all, self._db.signal, after_position, idle_ms=self._subscribe_idle_ms
        )

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the snapshot unless the stored one is newer (one snapshot per stream)."""
        assert_valid_snapshot(snapshot)
        await self._round_trip(write=True)
        stored = self._db.snapshots.get(snapshot.stream_id)
        if stored is None or stored.stream_version <= snapshot.stream_version:
            self._db.snapshots[snapshot.stream_id] = snapshot

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Return the stream's snapshot, or None."""
        await self._round_trip()
        return self._db.snapshots.get(stream_id)

    async def delete_snapshots(self, stream_id: str | None = None) -> None:
        """Delete one stream's snapshot, or all when ``stream_id`` is None."""
        await self._round_trip(write=True)
        if stream_id is None:
            self._db.snapshots.clear()
        else:
            self._db.snapshots.pop(stream_id, None)

    def _require_open(self) -> None:
        """Refuse a store that is not open, as a closed connection would."""
        if not self._open:
            raise StoreUnavailable("the memory event store is closed")

    async def _round_trip(self, *, write: bool = False) -> None:
        """Wait one round trip, then fail it if the faults say so."""
        self._require_open()
        delay_s = self._faults.delay_s(write=write)
        if delay_s:
            await asyncio.sleep(delay_s)
        if self._faults.read_fails():
            raise StoreUnavailable("injected: the store did not answer")
