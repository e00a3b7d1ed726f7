"""Slice ranges owned by lease, and the epoch fence the database keeps (migration 0003).

Two stores on one schema stand for two command servers. What is proved, against the real
PostgreSQL: a range is held by one owner at a time and its epoch rises at every takeover;
every event is written at its writer's epoch for its range; once a range changed hands, the
old owner's appends are refused (`FencedOff`) on both append paths and write nothing, as are
a lease-less writer's; a takeover waits for an append under way, but not past the lease for
a writer paused inside it, while the owner's renewal does not wait for it; renewal reports
a range lost; two standbys that split the ranges
end with one holding them all. The fence covers entity streams; process records (transfers,
trades, requests) are kept by their versions, whoever owns their range (migration 0005).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pointex.server import limits
from pointex.server.command.app.ownership import SliceOwnership
from pointex.server.eventstore.port import (
    SLICE_RANGES,
    FencedOff,
    NewEvent,
    StreamAppend,
    WrongExpectedVersion,
    stream_slice,
)
from pointex.server.eventstore.postgres.leases import slice_range
from pointex.server.eventstore.postgres.store import PostgresEventStore
from tests.integration.by_hand import insert_holding_the_lock

pytestmark = pytest.mark.postgres

EVENT = NewEvent("Counted", 1, b"{}")
LEASE_MS = 300
EXPIRED_S = 0.4  # Longer than LEASE_MS.
WAIT_S = 0.3
# Long enough for two standbys to give up a split and one of them to take every range.
RACE_S = 20.0
# A batch at least this large goes as one call of append_events, a smaller one in the locked
# transaction: both paths carry the epochs.
LARGE_EVENTS = limits.append_one_statement_events_min


def streams_in(range_: int, count: int) -> list[str]:
    """Return `count` account stream ids whose slices lie in `range_`."""
    found = (f"account-r{range_}x{i}" for i in itertools.count())
    return list(
        itertools.islice((s for s in found if slice_range(stream_slice(s)) == range_), count)
    )


@pytest.fixture
async def stores(pg_dsn: str, pg_schema: str) -> AsyncIterator[list[PostgresEventStore]]:
    """Three stores on one schema: two command servers and one that runs without a lease."""
    opened = [PostgresEventStore(pg_dsn, schema=pg_schema) for _ in range(3)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


async def epochs_written(pg_dsn: str, pg_schema: str, stream_id: str) -> list[int]:
    """Return the epoch of each event of a stream, in version order."""
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        rows = await connection.fetch(
            "SELECT epoch FROM events WHERE stream_id = $1 ORDER BY stream_version", stream_id
        )
    finally:
        await connection.close()
    return [int(row["epoch"]) for row in rows]


async def test_a_range_has_one_owner_and_its_epoch_rises_at_each_takeover(
    stores: list[PostgresEventStore],
) -> None:
    """Taken, refused to another while held, taken over once expired, reported lost."""
    first = stores[0].slice_leases("first-run-1", LEASE_MS)
    second = stores[1].slice_leases("second-run-1", LEASE_MS)
    assert await first.acquire([0, 1]) == {0: 1, 1: 1}
    assert await second.acquire([1, 2]) == {2: 1}  # Range 1 is held.
    await asyncio.sleep(EXPIRED_S)
    assert await second.renew() == set()  # Expired, but nobody took it: still its own.
    assert await second.acquire([1]) == {1: 2}
    assert await first.renew() == {1}
    assert first.held() == {0: 1}
    assert second.held() == {1: 2, 2: 1}
    leases = {lease.slice_range: lease for lease in await stores[2].leases()}
    assert sorted(leases) == [0, 1, 2]
    assert (leases[1].owner_id, leases[1].epoch) == ("second-run-1", 2)
    assert leases[2].expires_in_ms > 0
    await second.release([2])
    assert await first.acquire([2]) == {2: 2}  # Released: taken at once.
    assert len(first.epochs()) == SLICE_RANGES


@pytest.mark.parametrize("events", [1, LARGE_EVENTS], ids=["locked", "one-call"])
async def test_an_owner_that_lost_its_range_is_fenced_off_and_writes_nothing(
    stores: list[PostgresEventStore], pg_dsn: str, pg_schema: str, events: int
) -> None:
    """Events carry their epoch; after a takeover the old owner's append is refused."""
    old, new, alone = stores
    [stream, other] = streams_in(5, 2)
    [elsewhere] = streams_in(6, 1)
    first = old.slice_leases("old-run-1", LEASE_MS)
    assert await first.acquire([5]) == {5: 1}
    await old.append([StreamAppend(stream, 0, (EVENT,) * events)])
    assert await epochs_written(pg_dsn, pg_schema, stream) == [1] * events
    # The old owner is paused past its lease; another server takes the range over.
    await asyncio.sleep(EXPIRED_S)
    second = new.slice_leases("new-run-1", LEASE_MS)
    assert await second.acquire([5]) == {5: 2}
    head = await old.head_position()
    with pytest.raises(FencedOff):
        await old.append([StreamAppend(stream, events, (EVENT,) * events)])
    with pytest.raises(FencedOff):  # A unit touching the range fails whole.
        await old.append(
            [StreamAppend(other, 0, (EVENT,) * events), StreamAppend(elsewhere, 0, (EVENT,))]
        )
    with pytest.raises(FencedOff):  # A server without a lease may not write there either.
        await alone.append([StreamAppend(stream, events, (EVENT,) * events)])
    assert await old.head_position() == head
    await new.append([StreamAppend(stream, events, (EVENT,) * events)])
    assert await epochs_written(pg_dsn, pg_schema, stream) == [1] * events + [2] * events
    # Outside any lease, a lease-less writer's events are at epoch 0.
    await alone.append([StreamAppend(elsewhere, 0, (EVENT,))])
    assert await epochs_written(pg_dsn, pg_schema, elsewhere) == [0]


def records_in(range_: int, category: str, count: int) -> list[str]:
    """Return `count` stream ids of a process-record category whose slices lie in `range_`."""
    found = (f"{category}-r{range_}x{i}" for i in itertools.count())
    return list(
        itertools.islice((s for s in found if slice_range(stream_slice(s)) == range_), count)
    )


@pytest.mark.parametrize("events", [1, LARGE_EVENTS], ids=["locked", "one-call"])
@pytest.mark.parametrize("category", ["transfer", "trade", "request"])
async def test_process_records_are_kept_by_their_versions_not_by_the_fence(
    stores: list[PostgresEventStore], events: int, category: str
) -> None:
    """A step commits its entity's events with a record in another server's range.

    The owner of an account's range writes the account with a record whose range another
    server holds; the record's version keeps a second writer of the same step out. The
    account's own range stays fenced: the other server cannot write the account, not even
    with a record of its own range.
    """
    ours, theirs, _alone = stores
    [account] = streams_in(7, 1)
    [record, other_record] = records_in(8, category, 2)
    mine = ours.slice_leases("ours-run-1", LEASE_MS)
    other = theirs.slice_leases("theirs-run-1", LEASE_MS)
    assert await mine.acquire([7]) == {7: 1}
    assert await other.acquire([8]) == {8: 1}
    await ours.append(
        [StreamAppend(account, 0, (EVENT,) * events), StreamAppend(record, 0, (EVENT,))]
    )
    with pytest.raises(WrongExpectedVersion):  # The same step, again: its version is taken.
        await theirs.append([StreamAppend(record, 0, (EVENT,))])
    head = await ours.head_position()
    with pytest.raises(FencedOff):
        await theirs.append(
            [StreamAppend(account, events, (EVENT,)), StreamAppend(other_record, 0, (EVENT,))]
        )
    assert await theirs.head_position() == head
    # A record's next version goes to whichever writer comes first, by version alone.
    await theirs.append([StreamAppend(record, 1, (EVENT,) * events)])
    assert [e.stream_version for e in await ours.read_stream(record)] == list(range(1, events + 2))


async def test_a_takeover_waits_for_an_append_under_way(
    stores: list[PostgresEventStore], pg_dsn: str, pg_schema: str
) -> None:
    """An insert of the old epoch not yet committed: the takeover waits, then comes after."""
    old, new, _ = stores
    [stream] = streams_in(9, 1)
    first = old.slice_leases("old-run-1", LEASE_MS)
    assert await first.acquire([9]) == {9: 1}
    writer = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        transaction = writer.transaction()
        await transaction.start()
        await insert_holding_the_lock(writer, stream, epoch=1)
        await asyncio.sleep(EXPIRED_S)
        second = new.slice_leases("new-run-1", LEASE_MS)
        takeover = asyncio.create_task(second.acquire([9]))
        await asyncio.sleep(WAIT_S)
        assert not takeover.done(), "the range changed hands under an append of its old epoch"
        await transaction.commit()
        assert await asyncio.wait_for(takeover, 10) == {9: 2}
    finally:
        await writer.close()
    assert await epochs_written(pg_dsn, pg_schema, stream) == [1]
    with pytest.raises(FencedOff):
        await old.append([StreamAppend(stream, 1, (EVENT,))])


async def test_two_standbys_that_split_the_ranges_give_them_up_until_one_has_all(
    stores: list[PostgresEventStore],
) -> None:
    """Each standby took half: both give their half up, and one of them then takes all 64."""
    first_run, second_run, _ = stores
    standbys = [
        SliceOwnership(first_run, LEASE_MS, "standby-a"),
        SliceOwnership(second_run, LEASE_MS, "standby-b"),
    ]
    half = SLICE_RANGES // 2
    # As if each had taken one half of ranges that expired apart.
    await standbys[0]._leases.acquire(range(half))
    await standbys[1]._leases.acquire(range(half, SLICE_RANGES))
    assert [standby.ranges_held for standby in standbys] == [half, half]
    taking = [asyncio.create_task(standby.take_all()) for standby in standbys]
    try:
        done, _ = await asyncio.wait(taking, timeout=RACE_S, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "neither standby took every range"
        await asyncio.sleep(2 * LEASE_MS / 1000)  # The winner renews; the other still waits.
        winner, loser = standbys if taking[0] in done else standbys[::-1]
        assert winner.ranges_held == SLICE_RANGES
        assert loser.ranges_held == 0
        assert not any(task.done() for task in taking if task not in done)
        leases = await first_run.leases()
        assert {lease.owner_id for lease in leases} == {winner.owner_id}
        # Released, then taken again: every range is past its first epoch.
        assert min(lease.epoch for lease in leases) >= 2
    finally:
        for task in taking:
            task.cancel()
        await asyncio.gather(*taking, return_exceptions=True)
        for standby in standbys:
            await standby.stop()


async def test_a_writer_paused_inside_its_append_holds_a_takeover_no_longer_than_its_lease(
    pg_dsn: str, pg_schema: str
) -> None:
    """Stalled between its INSERT and COMMIT, the old owner is ended by the database."""
    [stream] = streams_in(9, 1)
    stalled = asyncio.Event()

    async def pause_forever(_rows: object) -> None:  # As SIGSTOP would, before COMMIT.
        stalled.set()
        await asyncio.sleep(3600)

    old = PostgresEventStore(
        pg_dsn, schema=pg_schema, before_commit=pause_forever, stalled_transaction_ms=LEASE_MS
    )
    new = PostgresEventStore(pg_dsn, schema=pg_schema)
    await old.open()
    await new.open()
    appending = None
    try:
        assert await old.slice_leases("old-run-1", LEASE_MS).acquire([9]) == {9: 1}
        appending = asyncio.create_task(old.append([StreamAppend(stream, 0, (EVENT,))]))
        await asyncio.wait_for(stalled.wait(), 10)
        await asyncio.sleep(EXPIRED_S)
        # The stalled transaction holds range 9's lease row; the database ends it after
        # LEASE_MS idle, and the takeover goes through (with the default, 30 s, it would not).
        takeover = new.slice_leases("new-run-1", LEASE_MS).acquire([9])
        assert await asyncio.wait_for(takeover, 10) == {9: 2}
    finally:
        if appending is not None:
            appending.cancel()
            await asyncio.gather(appending, return_exceptions=True)
        await old.close()
        await new.close()
    assert await epochs_written(pg_dsn, pg_schema, stream) == []


async def test_the_owner_renews_while_its_own_append_is_under_way(
    stores: list[PostgresEventStore], pg_dsn: str, pg_schema: str
) -> None:
    """A renewal does not wait for the owner's uncommitted append (nor deadlock with it)."""
    owner, _, _ = stores
    [stream] = streams_in(9, 1)
    leases = owner.slice_leases("run-1", LEASE_MS)
    assert await leases.acquire([9]) == {9: 1}
    writer = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        transaction = writer.transaction()
        await transaction.start()
        await insert_holding_the_lock(writer, stream, epoch=1)
        # The insert guard holds range 9's lease row until COMMIT; the renewal goes through.
        assert await asyncio.wait_for(leases.renew(), WAIT_S * 10) == set()
        await transaction.commit()
    finally:
        await writer.close()
    assert await epochs_written(pg_dsn, pg_schema, stream) == [1]
