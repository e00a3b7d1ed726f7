"""Contract of every event store: appends, versions, positions, reads and slices.

Each test runs on SQLite and on PostgreSQL through the fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import zlib
from collections.abc import Callable

import pytest

from pointex.server import limits
from pointex.server.eventstore.port import (
    SLICES,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
    stream_category,
    stream_entity_id,
    stream_slice,
)

MakeStore = Callable[..., EventStore]


def new_stream_id(category: str = "account") -> str:
    """Return a random stream id of a category, so tests never share a stream."""
    return f"{category}-{secrets.token_hex(4)}"


def events(count: int, type_name: str = "PointsIssued") -> tuple[NewEvent, ...]:
    """Return ``count`` distinct new events."""
    return tuple(
        NewEvent(type_name, 1, f"data-{index}".encode(), f'{{"n":{index}}}'.encode())
        for index in range(count)
    )


async def test_append_then_read_stream_returns_the_events_in_version_order(
    store: EventStore,
) -> None:
    """Append three events to a new stream; reading it returns them, versions 1..3."""
    stream_id = new_stream_id()
    written = await store.append([StreamAppend(stream_id, 0, events(3))])
    read = await store.read_stream(stream_id)
    assert read == written
    assert [event.stream_version for event in read] == [1, 2, 3]
    assert [event.data for event in read] == [b"data-0", b"data-1", b"data-2"]
    assert [event.metadata for event in read] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert {event.type for event in read} == {"PointsIssued"}
    assert await store.stream_version(stream_id) == 3


async def test_read_stream_starts_at_from_version_and_stops_at_limit(store: EventStore) -> None:
    """Read a five-event stream from version 2 with a limit of 2: versions 2 and 3."""
    stream_id = new_stream_id()
    await store.append([StreamAppend(stream_id, 0, events(5))])
    read = await store.read_stream(stream_id, from_version=2, limit=2)
    assert [event.stream_version for event in read] == [2, 3]
    assert await store.read_stream(stream_id, from_version=6) == []


async def test_absent_stream_has_version_zero_and_no_events(store: EventStore) -> None:
    """A stream never written has version 0 and reads as empty."""
    stream_id = new_stream_id()
    assert await store.stream_version(stream_id) == 0
    assert await store.read_stream(stream_id) == []


async def test_stream_versions_reads_many_streams_at_once(store: EventStore) -> None:
    """stream_versions answers every asked stream in one call, 0 for streams that do not exist."""
    one, two, absent = new_stream_id(), new_stream_id(), new_stream_id()
    await store.append([StreamAppend(one, 0, events(3)), StreamAppend(two, 0, events(1))])
    assert await store.stream_versions([one, absent, two]) == {one: 3, absent: 0, two: 1}


async def test_read_stream_starts_reads_the_first_events_of_many_streams_at_once(
    store: EventStore,
) -> None:
    """Each stream's first events, in version order; a stream that does not exist is left out."""
    long, short, absent = new_stream_id("transfer"), new_stream_id("transfer"), new_stream_id()
    written = await store.append(
        [StreamAppend(long, 0, events(5)), StreamAppend(short, 0, events(2))]
    )
    found = await store.read_stream_starts([long, absent, short], 3)
    assert found == {long: written[:3], short: written[5:]}
    assert await store.read_stream_starts([absent], 3) == {}
    assert await store.read_stream_starts([short], 1) == {short: written[5:6]}


async def test_recorded_event_carries_every_stored_field(store: EventStore) -> None:
    """An appended event comes back with position, slice, schema version and a clock."""
    stream_id = new_stream_id("market")
    event = NewEvent("OrderPlaced", 3, b"\x00\xff payload", b'{"request_id":"r1"}')
    (recorded,) = await store.append([StreamAppend(stream_id, 0, (event,))])
    (read,) = await store.read_stream(stream_id)
    assert read == recorded
    assert recorded.position == 1
    assert recorded.stream_id == stream_id
    assert recorded.slice == stream_slice(stream_id)
    assert (recorded.type, recorded.schema_version) == ("OrderPlaced", 3)
    assert (recorded.data, recorded.metadata) == (event.data, event.metadata)
    # After 2020-01-01 and before 2100-01-01, in microseconds.
    assert 1_577_836_800_000_000 < recorded.recorded_at_us < 4_102_444_800_000_000


async def test_payloads_at_their_size_bounds_round_trip(store: EventStore) -> None:
    """An event with data and metadata at their byte bounds is stored unchanged."""
    stream_id = new_stream_id()
    data = secrets.token_bytes(limits.event_data_bytes_max)
    metadata = secrets.token_bytes(limits.event_metadata_bytes_max)
    await store.append([StreamAppend(stream_id, 0, (NewEvent("Big", 1, data, metadata),))])
    (read,) = await store.read_stream(stream_id)
    assert (read.data, read.metadata) == (data, metadata)


async def test_wrong_expected_version_names_stream_expected_and_actual_and_writes_nothing(
    store: EventStore,
) -> None:
    """Append expecting version 1 to a stream at version 2: the error names all three."""
    stream_id = new_stream_id()
    await store.append([StreamAppend(stream_id, 0, events(2))])
    head = await store.head_position()
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append([StreamAppend(stream_id, 1, events(1))])
    conflict = raised.value
    assert (conflict.stream_id, conflict.expected_version, conflict.actual_version) == (
        stream_id,
        1,
        2,
    )
    assert stream_id in str(conflict)
    assert "expected 1" in str(conflict)
    assert "actual 2" in str(conflict)
    assert await store.head_position() == head
    assert await store.stream_version(stream_id) == 2


async def test_expected_version_zero_refuses_an_existing_stream(store: EventStore) -> None:
    """Expecting version 0 (new stream) on an existing stream is a conflict."""
    stream_id = new_stream_id()
    await store.append([StreamAppend(stream_id, 0, events(1))])
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append([StreamAppend(stream_id, 0, events(1))])
    assert raised.value.actual_version == 1


async def test_expected_version_ahead_of_the_stream_is_a_conflict(store: EventStore) -> None:
    """Expecting version 5 on a new stream is a conflict with actual version 0."""
    stream_id = new_stream_id()
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append([StreamAppend(stream_id, 5, events(1))])
    assert (raised.value.expected_version, raised.value.actual_version) == (5, 0)
    assert await store.head_position() == 0


async def test_multi_stream_append_with_one_conflict_writes_nothing_to_any_stream(
    store: EventStore,
) -> None:
    """A transfer-like append to three streams, one of them stale, leaves all untouched."""
    debit, credit, process = new_stream_id(), new_stream_id(), new_stream_id("transfer")
    await store.append([StreamAppend(credit, 0, events(1))])
    head = await store.head_position()
    with pytest.raises(WrongExpectedVersion) as raised:
        await store.append(
            [
                StreamAppend(debit, 0, events(1)),
                StreamAppend(credit, 0, events(1)),
                StreamAppend(process, 0, events(2)),
            ]
        )
    assert raised.value.stream_id == credit
    assert await store.head_position() == head
    assert await store.stream_version(debit) == 0
    assert await store.stream_version(process) == 0


async def test_multi_stream_append_commits_all_streams_with_consecutive_positions(
    store: EventStore,
) -> None:
    """A three-stream append commits every stream, positions consecutive in input order."""
    streams = [new_stream_id(), new_stream_id(), new_stream_id("transfer")]
    written = await store.append([StreamAppend(each, 0, events(2)) for each in streams])
    assert [event.position for event in written] == [1, 2, 3, 4, 5, 6]
    assert [event.stream_id for event in written] == [streams[0]] * 2 + [streams[1]] * 2 + [
        streams[2]
    ] * 2
    for each in streams:
        assert await store.stream_version(each) == 2


async def test_append_batch_reports_a_conflicting_unit_in_its_slot_and_commits_the_others(
    store: EventStore,
) -> None:
    """Group commit of three units, the middle one stale: units 1 and 3 commit, 2 reports."""
    first, stale, third = new_stream_id(), new_stream_id(), new_stream_id()
    await store.append([StreamAppend(stale, 0, events(1))])
    results = await store.append_batch(
        [
            [StreamAppend(first, 0, events(2))],
            [StreamAppend(stale, 0, events(1)), StreamAppend(new_stream_id(), 0, events(1))],
            [StreamAppend(third, 0, events(1))],
        ]
    )
    assert len(results) == 3
    unit_one, unit_two, unit_three = results
    assert isinstance(unit_one, list)
    assert isinstance(unit_two, WrongExpectedVersion)
    assert isinstance(unit_three, list)
    assert (unit_two.stream_id, unit_two.expected_version, unit_two.actual_version) == (
        stale,
        0,
        1,
    )
    assert [event.position for event in unit_one + unit_three] == [2, 3, 4]
    assert await store.read_all(0, 10) == [*await store.read_stream(stale), *unit_one, *unit_three]


async def test_append_batch_applies_units_in_order_so_a_later_unit_sees_earlier_versions(
    store: EventStore,
) -> None:
    """Two units on one stream in one batch: the second must expect the first's version."""
    stream_id = new_stream_id()
    results = await store.append_batch(
        [
            [StreamAppend(stream_id, 0, events(1))],
            [StreamAppend(stream_id, 0, events(1))],
            [StreamAppend(stream_id, 1, events(1))],
        ]
    )
    first, second, third = results
    assert isinstance(first, list)
    assert isinstance(second, WrongExpectedVersion)
    assert second.actual_version == 1
    assert isinstance(third, list)
    assert [event.stream_version for event in first + third] == [1, 2]


async def test_append_batch_where_every_unit_conflicts_writes_nothing(store: EventStore) -> None:
    """A batch whose units all conflict returns a conflict in each slot and no events."""
    results = await store.append_batch(
        [[StreamAppend(new_stream_id(), 3, events(1))] for _ in range(3)]
    )
    assert all(isinstance(result, WrongExpectedVersion) for result in results)
    assert await store.head_position() == 0


async def test_positions_are_gap_free_from_one_across_streams(store: EventStore) -> None:
    """Twenty appends to seven streams get positions exactly 1..N in read_all order."""
    streams = [new_stream_id() for _ in range(7)]
    versions = dict.fromkeys(streams, 0)
    for index in range(20):
        stream_id = streams[index % len(streams)]
        count = 1 + index % 3
        await store.append([StreamAppend(stream_id, versions[stream_id], events(count))])
        versions[stream_id] += count
    total = sum(versions.values())
    everything = await store.read_all(0, limits.read_batch_events_max)
    assert [event.position for event in everything] == list(range(1, total + 1))
    assert await store.head_position() == total


async def test_read_all_pages_by_position(store: EventStore) -> None:
    """Page through 25 events seven at a time: pages are ascending and join without a gap."""
    stream_id = new_stream_id()
    await store.append([StreamAppend(stream_id, 0, events(25))])
    pages: list[list[RecordedEvent]] = []
    after_position = 0
    for _ in range(10):
        page = await store.read_all(after_position, 7)
        if not page:
            break
        pages.append(page)
        after_position = page[-1].position
    assert [len(page) for page in pages] == [7, 7, 7, 4]
    assert [event.position for page in pages for event in page] == list(range(1, 26))
    assert await store.read_all(25, 7) == []
    assert [event.position for event in await store.read_all(20, 100)] == [21, 22, 23, 24, 25]


async def test_head_position_is_zero_when_empty_then_the_last_position(store: EventStore) -> None:
    """The head is 0 on an empty log and the last position after appends."""
    assert await store.head_position() == 0
    await store.append([StreamAppend(new_stream_id(), 0, events(4))])
    assert await store.head_position() == 4


def test_stream_category_and_entity_id_split_at_the_first_dash() -> None:
    """``market-PTS-CNY`` has category ``market`` and entity id ``PTS-CNY``."""
    assert stream_category("market-PTS-CNY") == "market"
    assert stream_entity_id("market-PTS-CNY") == "PTS-CNY"
    assert stream_category("account-7f3a") == "account"
    assert stream_entity_id("account-7f3a") == "7f3a"


def test_slice_is_crc32_of_the_entity_id_modulo_1024() -> None:
    """The slice rule is crc32(entity id) % 1024, stable across processes and releases."""
    assert SLICES == 1024
    assert stream_slice("account-7f3a") == zlib.crc32(b"7f3a") % 1024
    assert stream_slice("market-PTS-CNY") == zlib.crc32(b"PTS-CNY") % 1024
    # Hard literals, computed once: a change here re-slices every stored event.
    assert stream_slice("account-7f3a") == 104
    assert stream_slice("account-1") == 951


async def test_stored_slice_follows_the_crc32_rule(store: EventStore) -> None:
    """Every stored event's slice equals crc32 of its stream's entity id modulo 1024."""
    streams = [new_stream_id(), new_stream_id("market"), "market-PTS-CNY"]
    await store.append([StreamAppend(each, 0, events(1)) for each in streams])
    for event in await store.read_all(0, 10):
        assert event.slice == zlib.crc32(stream_entity_id(event.stream_id).encode()) % 1024


async def test_two_writers_racing_on_one_stream_exactly_one_wins(
    make_store: MakeStore,
) -> None:
    """Two stores (separate connections) append to one stream expecting the same version."""
    writers = [make_store(), make_store()]
    for writer in writers:
        await writer.open()
    stream_id = new_stream_id()
    await writers[0].append([StreamAppend(stream_id, 0, events(1))])
    for _ in range(5):
        version = await writers[0].stream_version(stream_id)
        outcomes = await asyncio.gather(
            *(writer.append([StreamAppend(stream_id, version, events(1))]) for writer in writers),
            return_exceptions=True,
        )
        winners = [outcome for outcome in outcomes if isinstance(outcome, list)]
        losers = [outcome for outcome in outcomes if isinstance(outcome, WrongExpectedVersion)]
        assert len(winners) == 1
        assert len(losers) == 1
        assert (losers[0].expected_version, losers[0].actual_version) == (version, version + 1)
    assert await writers[1].stream_version(stream_id) == 6


@pytest.mark.parametrize("many", [False, True], ids=["one-append", "one-statement-batch"])
async def test_any_stream_id_and_type_is_stored_as_given(store: EventStore, many: bool) -> None:
    """Quotes, backslashes, commas, braces, spaces, NULL: each id and type comes back as is.

    Alone and in a batch large enough for PostgreSQL's one-statement path, which sends
    these columns as array literals.
    """
    tag = secrets.token_hex(3)
    odd = ['x-a"b', "x-c\\d", "x-e,f", "x-{g}", "x-h i", "x-NULL", "NULL-x", "x-é"]
    stream_ids = [f"{stream_id}{tag}" for stream_id in odd]
    count = limits.append_one_statement_events_min // len(odd) + 1 if many else 1
    appends = [
        StreamAppend(stream_id, 0, events(count, type_name=f'T "{i}",\\{{}}'))
        for i, stream_id in enumerate(stream_ids)
    ]
    if many:  # The first large batch of a writer plans under the lock; the next is one statement.
        priming = [StreamAppend(new_stream_id(), 0, events(count)) for _ in odd]
        await store.append_batch([priming])
    written = await store.append_batch([appends])
    assert not any(isinstance(outcome, WrongExpectedVersion) for outcome in written)
    for i, stream_id in enumerate(stream_ids):
        read = await store.read_stream(stream_id)
        assert [event.stream_id for event in read] == [stream_id] * count
        assert {event.type for event in read} == {f'T "{i}",\\{{}}'}
        assert [event.stream_version for event in read] == list(range(1, count + 1))
    assert await store.stream_versions(stream_ids) == dict.fromkeys(stream_ids, count)


async def test_a_large_batch_commits_gap_free_and_leaves_out_only_its_conflicting_unit(
    store: EventStore,
) -> None:
    """A group commit past the one-statement bound, one unit stale: the others land in order.

    On PostgreSQL such a batch is first tried as one statement, which writes nothing when a
    version is not the expected one, and then goes through the locked transaction; every
    rule of a smaller batch holds the same: versions per unit in order, each conflict in its
    slot, positions gap-free from the head, and the reported events are the stored ones.
    """
    before = await store.head_position()
    existing = new_stream_id()
    await store.append([StreamAppend(existing, 0, events(2))])
    units = [
        [StreamAppend(new_stream_id(), 0, events(4)), StreamAppend(new_stream_id(), 0, events(1))]
        for _ in range(limits.append_one_statement_events_min // 5 + 1)
    ]
    stale = len(units) // 2
    units[stale] = [StreamAppend(existing, 1, events(1))]  # The stream is at 2.
    units.append([StreamAppend(existing, 2, events(3))])  # Expects what it is at.
    outcomes = await store.append_batch(units)
    conflict = outcomes[stale]
    assert isinstance(conflict, WrongExpectedVersion)
    assert (conflict.stream_id, conflict.expected_version, conflict.actual_version) == (
        existing,
        1,
        2,
    )
    written: list[RecordedEvent] = []
    for i, outcome in enumerate(outcomes):
        if i != stale:
            assert isinstance(outcome, list), outcome
            written.extend(outcome)
    assert [event.position for event in written] == list(
        range(before + 3, before + 3 + len(written))
    )
    assert await store.read_all(before + 2, limits.read_batch_events_max) == written
    assert await store.stream_version(existing) == 5
    assert len({event.recorded_at_us for event in written}) == 1
