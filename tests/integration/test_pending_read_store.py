"""Pending points in the read-store contract, on SQLite and on PostgreSQL.

The accounts' pending points, the movements' pending delta and pending points after, and the
pending issues (what is left of each issue until it activates) round-trip through both
stores, count in the audit, compare equal after a rebuild, and arrive with migration 0004 on
a read store at schema 3 without losing a row. The fixtures are those of test_read_store.
"""

from __future__ import annotations

import dataclasses

from pointex.server import limits
from pointex.server.query.projections import project_batch
from pointex.server.query.readstore.port import (
    AccountFilter,
    HistoryFilter,
    PendingIssueRow,
    ReadStore,
)
from pointex.v1 import events_pb2
from tests.feed_events import Log
from tests.integration import test_read_store
from tests.integration.test_read_store import (
    UNDO_MIGRATION_6,
    MakeReadStore,
    apply,
    run_statements,
    seed,
)

# The read-store fixtures of the contract suite, shared as they are.
read_store_url = test_read_store.read_store_url
make_read_store = test_read_store.make_read_store
store = test_read_store.store

MEMO = "purchase #8812"


def pending_log(log: Log) -> list[list[events_pb2.Event]]:
    """Two issues pending for a1, a reversal from the first, then its activation; in batches.

    m1 mints 100 and issues 30 and 20 pending to a1 (pending 50); a ReverseIssue takes 12 of
    the first back (pending 38, m1 62); the first's 18 left activate (a1 available 18).
    """
    opened = [log.opened("m1", "acme", kind=2), log.opened("a1", "other")]
    minted = log.minted("m1", 100, after=100)
    first = log.pending_issue("m1", "a1", 30, merchant_after=70, pending_after=30, memo=MEMO)
    second = log.pending_issue("m1", "a1", 20, merchant_after=50, pending_after=50)
    issue = first[0].transfer_initiated.transfer_id
    reversal = log.reverse_pending("a1", "m1", issue, 12, member_available=0, merchant_after=62)
    activation = log.activated("a1", issue, 18, available_after=18, pending_after=20)
    return [
        [*opened, minted, *first],
        [*second, *reversal[:2]],
        [*reversal[2:], activation],
    ]


async def test_pending_points_round_trip_on_accounts_history_and_issues(store: ReadStore) -> None:
    """Accounts, listings, history and pending issues read back what the projection wrote."""
    batches = pending_log(Log())
    first_issue = batches[0][3].transfer_initiated.transfer_id
    second_issue = batches[1][0].transfer_initiated.transfer_id
    await apply(store, batches[0])
    stored = await store.pending_issues([first_issue, second_issue, "nobody"])
    # Its PointsPending is the log's sixth event.
    assert stored == {first_issue: PendingIssueRow(first_issue, "a1", "m1", 30, MEMO, 6)}
    await apply(store, batches[1])
    assert {i: r.amount_points for i, r in (await store.pending_issues([first_issue])).items()} == {
        first_issue: 18
    }
    await apply(store, batches[2])
    accounts = await store.accounts(["m1", "a1"])
    assert {k: (v.available_points, v.pending_points) for k, v in accounts.items()} == {
        "m1": (62, 0),
        "a1": (18, 20),
    }
    listed = await store.list_accounts(AccountFilter(), "", 10)
    assert listed == [accounts["a1"], accounts["m1"]]
    history = await store.history("a1", HistoryFilter(), 0, 10)
    assert [
        (
            m.kind,
            m.available_delta_points,
            m.pending_delta_points,
            m.available_points,
            m.pending_points,
        )
        for m in history
    ] == [
        ("ISSUE_PENDING", 0, 30, 0, 30),
        ("ISSUE_PENDING", 0, 20, 0, 50),
        ("REVERSE_ISSUE_OUT", 0, -12, 0, 38),
        ("POINTS_ACTIVATED", 18, -18, 18, 20),
    ]
    assert history[3].counterparty_account_id == "m1"
    assert await store.pending_issues([first_issue]) == {}
    assert [r.amount_points for r in (await store.pending_issues([second_issue])).values()] == [20]


async def test_the_audit_counts_pending_points_in_conservation(store: ReadStore) -> None:
    """Σ pending is reported, and available + held + pending + in flight = minted - burned."""
    batches = pending_log(Log())
    await apply(store, batches[0])
    await apply(store, batches[1])
    audit = await store.audit(10)
    # Between the reversal's debit and its credit: 12 in flight.
    assert (audit.available_points, audit.pending_points, audit.in_flight_points) == (50, 38, 12)
    assert audit.minted_points == 100
    await apply(store, batches[2])
    audit = await store.audit(10)
    assert (audit.available_points, audit.pending_points, audit.in_flight_points) == (80, 20, 0)
    assert (audit.negative_count, audit.over_ceiling_count) == (0, 0)


async def test_the_audit_finds_negative_and_over_ceiling_pending_points(store: ReadStore) -> None:
    """A negative pending balance, and available + held + pending above the ceiling, count."""
    log = Log()
    changes = project_batch([log.opened(f"a{i}", "acme") for i in range(3)], {}, 0)
    a0, a1, a2 = changes.accounts
    bad = (
        dataclasses.replace(a0, pending_points=-1),
        # Each part is under the ceiling; only the sum with pending is over it.
        dataclasses.replace(a1, available_points=limits.points_balance_max, pending_points=1),
        a2,
    )
    await store.apply(dataclasses.replace(changes, accounts=bad))
    audit = await store.audit(10)
    assert [row.account_id for row in audit.negative] == ["a0"]
    assert audit.negative[0].pending_points == -1
    assert [row.account_id for row in audit.over_ceiling] == ["a1"]
    assert (audit.negative_count, audit.over_ceiling_count, audit.pending_points) == (1, 1, 0)


async def test_a_rebuilt_generation_has_the_same_pending_rows(store: ReadStore) -> None:
    """A rebuild cut into other batches compares equal on pending columns and pending issues."""
    batches = pending_log(Log())
    for batch in batches:
        await apply(store, batch)
    events = [event for batch in batches for event in batch]
    generation = await store.create_generation()
    await apply(store, events[:12], generation)
    # Midway the pending issue, both accounts and the history differ.
    assert await store.count_differences(generation) > 0
    await apply(store, events[12:15], generation)
    await apply(store, events[15:], generation)
    assert await store.count_differences(generation) == 0


async def test_an_older_read_store_gets_pending_points_and_keeps_its_rows(
    store: ReadStore, make_read_store: MakeReadStore, read_store_url: str
) -> None:
    """Migration 0004 on a generation at schema 3 keeps every row, with 0 pending points."""
    log = Log()
    batches = await seed(store, log)
    accounts = await store.accounts(["m1", "a1", "o1"])
    history = await store.history("a1", HistoryFilter(), 0, 10)
    await store.close()
    await _undo_migration_4(read_store_url)
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.accounts(["m1", "a1", "o1"]) == accounts
    assert {row.pending_points for row in accounts.values()} == {0}
    assert await reopened.history("a1", HistoryFilter(), 0, 10) == history
    assert {(m.pending_delta_points, m.pending_points) for m in history} == {(0, 0)}
    pending = log.pending_issue("m1", "a1", 20, merchant_after=50, pending_after=20)
    await apply(reopened, pending)
    assert (await reopened.accounts(["a1"]))["a1"].pending_points == 20
    issue = pending[0].transfer_initiated.transfer_id
    assert [r.amount_points for r in (await reopened.pending_issues([issue])).values()] == [20]
    # The migrated generation compares equal to one built with every migration from the start.
    generation = await reopened.create_generation()
    for batch in [*batches, pending]:
        await apply(reopened, batch, generation)
    assert await reopened.count_differences(generation) == 0


async def _undo_migration_4(url: str) -> None:
    """Take generation 1 of a closed read store back to schema version 3.

    The later migrations are undone first, so that reapplying them all adds the columns in
    the order a fresh generation has them (the rebuild comparison matches rows by position).
    """
    await run_statements(
        url,
        [
            *UNDO_MIGRATION_6,
            "ALTER TABLE g1_accounts DROP COLUMN debt_floor_points",
            "DELETE FROM g1_schema_migrations WHERE version = 5",
            "ALTER TABLE g1_accounts DROP COLUMN pending_points",
            "ALTER TABLE g1_movements DROP COLUMN pending_delta_points",
            "ALTER TABLE g1_movements DROP COLUMN pending_points",
            "DROP TABLE g1_pending_issues",
            "DELETE FROM g1_schema_migrations WHERE version = 4",
        ],
    )
