"""Program expiry in the read-store contract, on SQLite and on PostgreSQL.

Points that lapse (PointsExpired) show as an EXPIRED movement and a POINTS_EXPIRED
notification; the notice before (PointsExpiringSoon) as a POINTS_EXPIRING_SOON notification
with its details; the read store totals the expired points apart from burns (migration
0008), so CheckInvariants' I1 holds after every event, across a restart and in a rebuilt
generation, and a read store at schema 7 is brought along without losing a row.
The fixtures are those of test_read_store.
"""

from __future__ import annotations

import itertools

from pointex.server.query import invariants, views
from pointex.server.query.readstore.port import HistoryFilter, NotificationFilter, ReadStore
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.feed_events import Log
from tests.integration import test_read_store
from tests.integration.test_read_store import MakeReadStore, apply, run_statements
from tests.unit.test_expiry_projections import (
    NOTICE_FIRST,
    NOTICE_LAST,
    expired,
    expiring_soon,
    issued,
)

# The read-store fixtures of the contract suite, shared as they are.
read_store_url = test_read_store.read_store_url
make_read_store = test_read_store.make_read_store
store = test_read_store.store

# What takes generation 1 from schema version 8 back to 7 (expired points).
UNDO_MIGRATION_8 = (
    "ALTER TABLE g1_totals DROP COLUMN expired_points",
    "DELETE FROM g1_schema_migrations WHERE version = 8",
)
EXPIRY_NOTICES = NotificationFilter(kinds=("POINTS_EXPIRED", "POINTS_EXPIRING_SOON"))


def expiry_log(log: Log) -> list[list[events_pb2.Event]]:
    """Batches: a1 gets 100; told 60 lapse soon; 30 lapse (a1 70); m1 burns 50 (m1 850)."""
    return [
        issued(log),
        [expiring_soon(log, "a1", 60)],
        [expired(log, "a1", 30, after=70), log.burned("m1", 50, after=850)],
    ]


async def _checked(store: ReadStore) -> query_service_pb2.CheckInvariantsResponse:
    """Assert CheckInvariants finds nothing; return its answer."""
    answer = invariants.check(await store.audit(10), 10)
    assert answer.ok, answer
    return answer


async def test_expiry_rows_round_trip_and_survive_a_restart(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """The EXPIRED movement, both notifications and the expired total read back after reopening."""
    for batch in expiry_log(Log()):
        await apply(store, batch)
    await store.close()
    reopened = make_read_store()
    await reopened.open()
    (move,) = await reopened.history("a1", HistoryFilter(kinds=("EXPIRED",)), 0, 10)
    assert (move.kind, move.available_delta_points, move.available_points) == ("EXPIRED", -30, 70)
    assert views.movement_message(move).kind == common_pb2.MovementKind.Value(
        "MOVEMENT_KIND_EXPIRED"
    )
    soon, lapsed = await reopened.notifications(EXPIRY_NOTICES, (0, 0), 10)
    assert (soon.kind, soon.account_id, soon.owner_partner_id) == (
        "POINTS_EXPIRING_SOON",
        "a1",
        "other",
    )
    details = query_service_pb2.Notification.FromString(soon.body).points_expiring_soon
    assert (details.amount_points, details.first_expires_at.seconds) == (60, NOTICE_FIRST)
    assert details.last_expires_at.seconds == NOTICE_LAST
    assert lapsed.kind == "POINTS_EXPIRED"
    moved = query_service_pb2.Notification.FromString(lapsed.body).points_moved
    assert (moved.amount_points, moved.available_points) == (30, 70)
    accounts = await reopened.accounts(["a1", "m1"])
    assert {a: r.available_points for a, r in accounts.items()} == {"a1": 70, "m1": 850}
    answer = await _checked(reopened)
    assert (answer.minted_points, answer.burned_points, answer.expired_points) == (1000, 50, 30)


async def test_i1_holds_after_every_event_and_a_rebuild_compares_equal(store: ReadStore) -> None:
    """One event a batch, CheckInvariants passes each time; a rebuild cut otherwise is equal."""
    events = [event for batch in expiry_log(Log()) for event in batch]
    expired_seen = []
    for event in events:
        await apply(store, [event])
        expired_seen.append((await _checked(store)).expired_points)
    assert expired_seen == [0] * (len(events) - 2) + [30, 30]
    generation = await store.create_generation()
    for start, end in itertools.pairwise([0, 5, len(events) - 1, len(events)]):
        await apply(store, events[start:end], generation)
        if end < len(events):
            assert await store.count_differences(generation) > 0
    assert await store.count_differences(generation) == 0


async def test_an_older_read_store_gets_the_expired_total_and_keeps_its_rows(
    store: ReadStore, make_read_store: MakeReadStore, read_store_url: str
) -> None:
    """Migration 0008 on a generation at schema 7: totals kept, 0 expired, then expiries count."""
    log = Log()
    await apply(store, issued(log))
    await apply(store, [log.burned("m1", 50, after=850)])
    before = await store.audit(10)
    await store.close()
    await run_statements(read_store_url, list(UNDO_MIGRATION_8))
    reopened = make_read_store()
    await reopened.open()
    migrated = await reopened.audit(10)
    assert migrated == before
    assert (migrated.minted_points, migrated.burned_points, migrated.expired_points) == (
        1000,
        50,
        0,
    )
    await apply(reopened, [expired(log, "a1", 30, after=70)])
    answer = await _checked(reopened)
    assert (answer.burned_points, answer.expired_points, answer.available_points) == (50, 30, 920)
