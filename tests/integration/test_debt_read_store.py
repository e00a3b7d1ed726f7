"""The accounts' debt floor in the read-store contract, on SQLite and on PostgreSQL.

A reversal under the program's debt policy may leave an account below zero, within the floor
its PointsDebited states. The floor round-trips through both stores, the audit and
CheckInvariants accept a balance down to it (and only down to it), a rebuild compares equal,
and migration 0005 brings it to a read store at schema 4 without losing a row. The fixtures
are those of test_read_store.
"""

from __future__ import annotations

import dataclasses

import pytest

from pointex.server.query import invariants
from pointex.server.query.projections import project_batch
from pointex.server.query.readstore.port import AccountFilter, HistoryFilter, ReadStore
from pointex.server.store_errors import StoreError
from pointex.v1 import events_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.feed_events import Log
from tests.integration import test_read_store
from tests.integration.test_read_store import MakeReadStore, apply, run_statements, seed

# The read-store fixtures of the contract suite, shared as they are.
read_store_url = test_read_store.read_store_url
make_read_store = test_read_store.make_read_store
store = test_read_store.store


def debt_log(log: Log) -> list[list[events_pb2.Event]]:
    """m1 gives a1 60, a1 gives b1 50, a ReverseIssue takes the 60 back; then credits; batches.

    The reversal finds 10 available and, under a debt policy of 100, leaves a1 at -50 with a
    floor of -100; b1 gives 30 back (a1 at -20), then m1 gives 25 (a1 at 5, the floor back
    at 0).
    """
    opened = [log.opened("m1", "acme", kind=2), log.opened("a1", "other"), log.opened("b1", "x")]
    return [
        [*opened, log.minted("m1", 100, after=100), *log.transfer("m1", "a1", 60, 40, 60)],
        log.transfer("a1", "b1", 50, 10, 50),
        [
            log.program_rules_set(reversal_debt_max=100),
            *log.reversal("a1", "m1", 60, source_after=-50, target_after=100, debt_floor=-100),
        ],
        log.transfer("b1", "a1", 30, 20, -20),
        log.transfer("m1", "a1", 25, 75, 5),
    ]


async def test_the_debt_floor_round_trips_and_ends_once_the_debt_is_paid(
    store: ReadStore,
) -> None:
    """Accounts, listings and history read back the debt; the floor is 0 once available ≥ 0."""
    batches = debt_log(Log())
    for batch in batches[:3]:
        await apply(store, batch)
    accounts = await store.accounts(["a1", "m1"])
    assert (accounts["a1"].available_points, accounts["a1"].debt_floor_points) == (-50, -100)
    assert accounts["m1"].debt_floor_points == 0
    assert await store.list_accounts(AccountFilter(owner_partner_id="other"), "", 10) == [
        accounts["a1"]
    ]
    history = await store.history("a1", HistoryFilter(newest_first=True), 0, 1)
    assert [(m.kind, m.available_delta_points, m.available_points) for m in history] == [
        ("REVERSE_ISSUE_OUT", -60, -50)
    ]
    await apply(store, batches[3])
    assert (await store.accounts(["a1"]))["a1"].debt_floor_points == -100
    await apply(store, batches[4])
    member = (await store.accounts(["a1"]))["a1"]
    assert (member.available_points, member.debt_floor_points) == (5, 0)


async def test_check_invariants_accepts_a_debt_within_its_floor(store: ReadStore) -> None:
    """In debt and after: no violation, and the negative balance counts in I1's sums."""
    batches = debt_log(Log())
    for batch in batches[:3]:
        await apply(store, batch)
    audit = await store.audit(10)
    assert (audit.negative_count, audit.negative) == (0, ())
    # m1 100, a1 -50, b1 50.
    assert (audit.available_points, audit.minted_points) == (100, 100)
    answer = invariants.check(audit, 10)
    assert answer.ok, answer
    for batch in batches[3:]:
        await apply(store, batch)
    answer = invariants.check(await store.audit(10), 10)
    assert (answer.ok, answer.available_points, answer.violation_count) == (True, 100, 0)


async def test_check_invariants_finds_a_balance_below_its_floor(store: ReadStore) -> None:
    """Below its debt floor, or negative without one, an account is a NON_NEGATIVE violation."""
    log = Log()
    changes = project_batch([log.opened(f"a{i}", "acme") for i in range(3)], {}, 0)
    a0, a1, a2 = changes.accounts
    broken = (
        dataclasses.replace(a0, available_points=-20, debt_floor_points=-10),
        dataclasses.replace(a1, available_points=-1),
        dataclasses.replace(a2, available_points=-10, debt_floor_points=-10),
    )
    await store.apply(dataclasses.replace(changes, accounts=broken))
    audit = await store.audit(10)
    assert [row.account_id for row in audit.negative] == ["a0", "a1"]
    assert audit.negative_count == 2
    answer = invariants.check(audit, 10)
    assert not answer.ok
    found = [
        (v.invariant, list(v.account_ids), v.expected_points, v.actual_points, v.message)
        for v in answer.violations
        if v.invariant == qpb.INVARIANT_NON_NEGATIVE
    ]
    assert found == [
        (
            qpb.INVARIANT_NON_NEGATIVE,
            ["a0"],
            -10,
            -20,
            "available is below the account's debt floor",
        ),
        (qpb.INVARIANT_NON_NEGATIVE, ["a1"], 0, -1, "available is negative"),
    ]


async def test_a_positive_debt_floor_is_refused_by_the_store(store: ReadStore) -> None:
    """The column's CHECK keeps a floor ≤ 0: a batch writing one above fails whole."""
    log = Log()
    changes = project_batch([log.opened("a1", "acme")], {}, 0)
    broken = tuple(dataclasses.replace(row, debt_floor_points=1) for row in changes.accounts)
    with pytest.raises(StoreError):
        await store.apply(dataclasses.replace(changes, accounts=broken))
    assert await store.checkpoint() == 0
    assert await store.accounts(["a1"]) == {}


async def test_a_rebuilt_generation_has_the_same_debt_floors(store: ReadStore) -> None:
    """A rebuild cut into other batches compares equal, the debt floor included."""
    batches = debt_log(Log())
    events = [event for batch in batches for event in batch]
    for batch in batches[:4]:
        await apply(store, batch)
    generation = await store.create_generation()
    cut = sum(len(batch) for batch in batches[:4])
    await apply(store, events[: cut - 3], generation)
    assert await store.count_differences(generation) > 0
    await apply(store, events[cut - 3 : cut], generation)
    assert await store.count_differences(generation) == 0


async def test_an_older_read_store_gets_the_debt_floor_and_keeps_its_rows(
    store: ReadStore, make_read_store: MakeReadStore, read_store_url: str
) -> None:
    """Migration 0005 on a generation at schema 4 keeps every row, with a floor of 0."""
    log = Log()
    batches = await seed(store, log)
    accounts = await store.accounts(["m1", "a1", "o1"])
    history = await store.history("a1", HistoryFilter(), 0, 10)
    await store.close()
    await _undo_migration_5(read_store_url)
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.accounts(["m1", "a1", "o1"]) == accounts
    assert {row.debt_floor_points for row in accounts.values()} == {0}
    assert await reopened.history("a1", HistoryFilter(), 0, 10) == history
    # a1 has 25 left of the 30 m1 gave it; a ReverseIssue of the 30 leaves it at -5.
    reversal = log.reversal("a1", "m1", 30, source_after=-5, target_after=100, debt_floor=-10)
    await apply(reopened, reversal)
    member = (await reopened.accounts(["a1"]))["a1"]
    assert (member.available_points, member.debt_floor_points) == (-5, -10)
    assert invariants.check(await reopened.audit(10), 10).ok
    # The migrated generation compares equal to one built with every migration from the start.
    generation = await reopened.create_generation()
    for batch in [*batches, reversal]:
        await apply(reopened, batch, generation)
    assert await reopened.count_differences(generation) == 0


async def _undo_migration_5(url: str) -> None:
    """Take generation 1 of a closed read store back to schema version 4."""
    await run_statements(
        url,
        [
            "ALTER TABLE g1_accounts DROP COLUMN debt_floor_points",
            "DELETE FROM g1_schema_migrations WHERE version = 5",
        ],
    )
