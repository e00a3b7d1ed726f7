"""Plan an append batch: check expected versions and assign versions and positions.

Both backends run the same plan inside their appending transaction, after taking the
position lock and reading the head position and the current versions of the streams
involved. The plan is pure, so it is the same on every backend by construction.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pointex.server import limits
from pointex.server.eventstore.port import (
    NewEvent,
    RecordedEvent,
    Snapshot,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
    is_valid_stream_id,
    stream_slice,
)


class VersionRaceError(StoreError):
    """An insert hit the unique (stream, version) or position index: nothing was written.

    Adapters raise it from their translation table and retry the whole transaction; it never
    reaches callers of the store.
    """


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """The rows to insert, in position order, and the outcome of every unit in input order."""

    rows: list[RecordedEvent]
    results: list[list[RecordedEvent] | WrongExpectedVersion]


def assert_valid_units(units: Sequence[Sequence[StreamAppend]]) -> None:
    """Assert that a batch is well formed; a malformed batch is a programmer error."""
    assert 1 <= len(units) <= limits.append_batch_units_max, len(units)
    events_total = 0
    for unit in units:
        assert 1 <= len(unit) <= limits.append_unit_streams_max, len(unit)
        distinct = len({append.stream_id for append in unit})
        assert distinct == len(unit), f"a stream twice in a unit: {unit}"
        for append in unit:
            assert_valid_append(append)
            events_total += len(append.events)
    assert events_total <= limits.append_batch_events_max, events_total


# The event types found well formed: a writer appends the same few types again and again, so
# each is checked once (up to a bound, past which every further type is checked every time).
_TYPES_CHECKED: set[str] = set()
_TYPES_CHECKED_MAX = 1_000


def assert_valid_append(append: StreamAppend) -> None:
    """Assert that one stream's append is well formed."""
    assert is_valid_stream_id(append.stream_id), append.stream_id
    assert append.expected_version >= 0, append.expected_version
    assert len(append.events) >= 1, append.stream_id
    for event in append.events:
        if event.type not in _TYPES_CHECKED:
            _assert_valid_type(event.type)
        assert event.schema_version >= 1, event.schema_version
        assert len(event.data) <= limits.event_data_bytes_max, len(event.data)
        assert len(event.metadata) <= limits.event_metadata_bytes_max, len(event.metadata)


def _assert_valid_type(type_name: str) -> None:
    assert 1 <= len(type_name.encode()) <= limits.event_type_bytes_max, type_name
    assert "." not in type_name, f"a type name, never a Python path: {type_name}"
    if len(_TYPES_CHECKED) < _TYPES_CHECKED_MAX:
        _TYPES_CHECKED.add(type_name)


def assert_valid_snapshot(snapshot: Snapshot) -> None:
    """Assert that a snapshot is well formed."""
    assert is_valid_stream_id(snapshot.stream_id), snapshot.stream_id
    assert snapshot.stream_version >= 1, snapshot.stream_version
    assert 1 <= len(snapshot.type.encode()) <= limits.event_type_bytes_max, snapshot.type
    assert snapshot.schema_version >= 1, snapshot.schema_version
    assert len(snapshot.data) <= limits.snapshot_data_bytes_max, len(snapshot.data)


def stream_ids_of(units: Sequence[Sequence[StreamAppend]]) -> list[str]:
    """Return the distinct stream ids of a batch, in first-seen order."""
    return list(dict.fromkeys(append.stream_id for unit in units for append in unit))


def plan_batch(
    units: Sequence[Sequence[StreamAppend]],
    versions: Mapping[str, int],
    head_position: int,
    recorded_at_us: int,
) -> BatchPlan:
    """Check each unit against the current versions, in order, and place its events.

    Args:
        units: The batch, already checked by `assert_valid_units`.
        versions: Current version of each stream of the batch that exists (absent = 0),
            read under the position lock.
        head_position: Highest committed position, read under the position lock.
        recorded_at_us: Wall clock to record with every event of the batch.

    Returns:
        The rows to insert (positions head_position+1 onwards, gap-free) and each unit's
        outcome: its recorded events, or the conflict that left it out.
    """
    return placed(units, conflicts(units, versions), head_position, recorded_at_us)


def conflicts(
    units: Sequence[Sequence[StreamAppend]], versions: Mapping[str, int]
) -> list[WrongExpectedVersion | None]:
    """Return, for each unit in order, the conflict that leaves it out, or None if it goes in.

    A unit is checked against `versions` (absent = 0) as advanced by the units before it.
    """
    current = dict(versions)
    outcomes: list[WrongExpectedVersion | None] = []
    for unit in units:
        conflict = _first_conflict(unit, current)
        outcomes.append(conflict)
        if conflict is None:
            for append in unit:
                current[append.stream_id] = append.expected_version + len(append.events)
    return outcomes


@dataclass(frozen=True, slots=True)
class Placement:
    """The events of a batch's units that go in, one entry per event in position order.

    Built once, in one pass over the appends, so that the store's columns and the recorded
    events are both read from it: the slice of each stream is computed once, and neither is
    built event by event in Python.
    """

    stream_ids: list[str]
    versions: list[int]
    slices: list[int]
    types: Sequence[str]
    schema_versions: Sequence[int]
    data: Sequence[bytes]
    metadata: Sequence[bytes]
    sizes: list[int]  # The events of each unit that goes in, in order.

    @property
    def count(self) -> int:
        """Return how many events go in."""
        return len(self.stream_ids)


def placement(
    units: Sequence[Sequence[StreamAppend]], outcomes: Sequence[WrongExpectedVersion | None]
) -> Placement:
    """Return the events of the units whose outcome is None (they go in), in order."""
    stream_ids: list[str] = []
    versions: list[int] = []
    slices: list[int] = []
    events: list[NewEvent] = []
    sizes: list[int] = []
    for unit, conflict in zip(units, outcomes, strict=True):
        if conflict is not None:
            continue
        size = 0
        for append in unit:
            stream_id = append.stream_id
            version = append.expected_version
            appended = append.events
            count = len(appended)
            if count == 1:  # The usual case, without building lists to extend with.
                stream_ids.append(stream_id)
                versions.append(version + 1)
                slices.append(stream_slice(stream_id))
            else:
                stream_ids.extend([stream_id] * count)
                versions.extend(range(version + 1, version + count + 1))
                slices.extend([stream_slice(stream_id)] * count)
            events.extend(appended)
            size += count
        sizes.append(size)
    # The events' own fields, as columns (NewEvent's field order).
    types, schema_versions, data, metadata = zip(*events, strict=True) if events else ((),) * 4
    return Placement(stream_ids, versions, slices, types, schema_versions, data, metadata, sizes)


def placed(
    units: Sequence[Sequence[StreamAppend]],
    outcomes: Sequence[WrongExpectedVersion | None],
    head_position: int,
    recorded_at_us: int,
    going_in: Placement | None = None,
) -> BatchPlan:
    """Return the plan of a batch whose units' `conflicts` are `outcomes`.

    `going_in` is their `placement`, when the caller built it already.
    """
    if going_in is None:
        going_in = placement(units, outcomes)
    count = going_in.count
    # RecordedEvent's fields in order, one column each: built by map rather than a loop.
    rows = list(
        map(
            RecordedEvent,
            range(head_position + 1, head_position + count + 1),
            going_in.stream_ids,
            going_in.versions,
            going_in.slices,
            going_in.types,
            going_in.schema_versions,
            going_in.data,
            going_in.metadata,
            itertools.repeat(recorded_at_us, count),
        )
    )
    results: list[list[RecordedEvent] | WrongExpectedVersion] = []
    sizes = iter(going_in.sizes)
    start = 0
    for conflict in outcomes:
        if conflict is not None:
            results.append(conflict)
            continue
        end = start + next(sizes)
        results.append(rows[start:end])
        start = end
    return BatchPlan(rows=rows, results=results)


def expected_versions(units: Sequence[Sequence[StreamAppend]]) -> dict[str, int]:
    """Return the version each stream of a batch is expected at, by its first append."""
    expected: dict[str, int] = {}
    for unit in units:
        for append in unit:
            expected.setdefault(append.stream_id, append.expected_version)
    return expected


def _first_conflict(
    unit: Sequence[StreamAppend], current: Mapping[str, int]
) -> WrongExpectedVersion | None:
    """Return the conflict of the unit's first stream whose version is not the expected one."""
    for append in unit:
        actual_version = current.get(append.stream_id, 0)
        if actual_version != append.expected_version:
            return WrongExpectedVersion(append.stream_id, append.expected_version, actual_version)
    return None


def conflict_after_race(
    unit: Sequence[StreamAppend], current: Mapping[str, int]
) -> WrongExpectedVersion:
    """Return the unit's conflict after a lost insert race, re-read from the database.

    When the versions read afterwards happen to match (the racing writer rolled back), the
    conflict names the first stream with its actual version, so the caller still re-reads.
    """
    conflict = _first_conflict(unit, current)
    if conflict is not None:
        return conflict
    first = unit[0]
    return WrongExpectedVersion(
        first.stream_id, first.expected_version, current.get(first.stream_id, 0)
    )
