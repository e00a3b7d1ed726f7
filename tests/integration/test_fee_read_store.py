"""Transfer fees in the read-store contract, on SQLite and on PostgreSQL.

A fee paid with a transfer shows in the source's TRANSFER_OUT (`fee_points`) and as the fee
account's FEE_IN; it is stored in flight (`transfer-<id>/fee`) until credited or returned, so
CheckInvariants' I1 holds at every cut; a return in a later batch is checked against the
stored points in flight; the rules in force keep their fee schedule's version; a rebuild
compares equal; migration 0006 brings a read store at schema 5 along without losing a row.
The fixtures are those of test_read_store.
"""

from __future__ import annotations

import itertools

from pointex.server.query import invariants
from pointex.server.query.projections.state import position_of
from pointex.server.query.readstore.port import HistoryFilter, InFlightRow, ReadStore
from pointex.v1 import events_pb2
from tests import fee_events
from tests.fee_events import FeeTransfer
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

GIFT = FeeTransfer("a1", "b1", "fees", amount=100, fee=4)


def funded(log: Log) -> list[list[events_pb2.Event]]:
    """Batches: m1 funds a1 with 500; the rules then set a fee of 2 + 15 per mille to `fees`."""
    opened = [
        log.opened("m1", "acme", kind=2),
        log.opened("fees", "ops", kind=2),
        log.opened("a1", "acme"),
        log.opened("b1", "other"),
    ]
    return [
        [*opened, log.minted("m1", 1000, after=1000), *log.transfer("m1", "a1", 500, 500, 500)],
        [fee_events.rules_set(log, fee_events.transfer_fee(2, 15, "fees"))],
    ]


def fee_log(log: Log) -> list[list[events_pb2.Event]]:
    """The funded batches, then a1 gives b1 100 four times, one batch each.

    In one unit (a1 396), step by step (292), with the fee refused (188, then 192 with the fee
    back), to a destination that refuses (88, then 192 again); b1 ends at 300, fees at 8.
    """
    return [
        *funded(log),
        fee_events.one_unit(log, GIFT, source_after=396, target_after=100, fee_after=4),
        fee_events.step_by_step(log, GIFT, source_after=292, target_after=200, fee_after=8),
        fee_events.step_by_step(log, GIFT, source_after=188, target_after=300, fee_after=None),
        fee_events.refused(log, GIFT, source_after=88),
    ]


async def _ok(store: ReadStore) -> int:
    """Assert CheckInvariants finds nothing; return the points in flight it counted."""
    answer = invariants.check(await store.audit(10), 10)
    assert answer.ok, answer
    return answer.in_flight_points


async def test_fee_movements_and_the_fee_schedule_round_trip_and_survive_a_restart(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """History reads back the fee of each debit and FEE_IN/FEE_RETURNED; the rules, their fee."""
    for batch in fee_log(Log()):
        await apply(store, batch)
    balances = {
        a: r.available_points for a, r in (await store.accounts(["a1", "b1", "fees"])).items()
    }
    assert balances == {"a1": 192, "b1": 300, "fees": 8}
    await store.close()
    reopened = make_read_store()
    await reopened.open()
    history = await reopened.history("a1", HistoryFilter(kinds=("TRANSFER_OUT",)), 0, 10)
    assert [(m.available_delta_points, m.fee_points) for m in history] == [(-104, 4)] * 4
    back = await reopened.history(
        "a1", HistoryFilter(kinds=("FEE_RETURNED", "TRANSFER_RETURNED")), 0, 10
    )
    assert [(m.kind, m.available_delta_points, m.fee_points) for m in back] == [
        ("FEE_RETURNED", 4, 0),
        ("TRANSFER_RETURNED", 104, 0),
    ]
    fees = await reopened.history("fees", HistoryFilter(), 0, 10)
    assert [(m.kind, m.available_delta_points, m.counterparty_account_id) for m in fees] == [
        ("FEE_IN", 4, "a1")
    ] * 2
    rules = await reopened.program_rules()
    assert rules is not None
    assert (rules.version, rules.fee_schedule_version) == (1, 1)
    assert await _ok(reopened) == 0


async def test_the_fee_is_stored_in_flight_until_settled_and_i1_holds_at_every_event(
    store: ReadStore,
) -> None:
    """Step by step, one event a batch: the points and the fee, then the fee alone, then none."""
    log = Log()
    for batch in funded(log):
        await apply(store, batch)
    steps = fee_events.step_by_step(log, GIFT, source_after=396, target_after=100, fee_after=4)
    transfer = steps[0].transfer_initiated.transfer_id
    keys = [f"transfer-{transfer}", f"transfer-{transfer}/fee"]
    counted = []
    for event in steps:
        await apply(store, [event])
        counted.append(await _ok(store))
    assert counted == [0, 104, 4, 4, 0, 0]
    assert await store.in_flight(keys) == {}


async def test_returns_in_a_later_batch_settle_the_stored_points_and_fee(
    store: ReadStore,
) -> None:
    """A refused fee and a refused destination, each returned a batch after its debit."""
    log = Log()
    for batch in funded(log):
        await apply(store, batch)
    fee_refused = fee_events.step_by_step(
        log, GIFT, source_after=396, target_after=100, fee_after=None
    )
    await apply(store, fee_refused[:3])
    first = fee_refused[0].transfer_initiated.transfer_id
    assert await store.in_flight([f"transfer-{first}/fee", "nothing"]) == {
        f"transfer-{first}/fee": InFlightRow(
            f"transfer-{first}/fee", "a1", 4, position_of(fee_refused[1])
        )
    }
    assert await _ok(store) == 4
    await apply(store, fee_refused[3:])
    assert await _ok(store) == 0
    refused = fee_events.refused(log, GIFT, source_after=296)
    await apply(store, refused[:2])
    assert await _ok(store) == 104
    await apply(store, refused[2:])
    assert await _ok(store) == 0
    accounts = await store.accounts(["a1", "b1", "fees"])
    assert {a: r.available_points for a, r in accounts.items()} == {
        "a1": 400,
        "b1": 100,
        "fees": 0,
    }


async def test_a_rebuilt_generation_with_fees_compares_equal(store: ReadStore) -> None:
    """A rebuild cut into other batches (debits apart from their returns) compares equal."""
    batches = fee_log(Log())
    for batch in batches:
        await apply(store, batch)
    events = [event for batch in batches for event in batch]
    generation = await store.create_generation()
    cuts = [0, 7, 14, 19, 24, 29, len(events)]
    for start, end in itertools.pairwise(cuts):
        await apply(store, events[start:end], generation)
        if end < len(events):
            assert await store.count_differences(generation) > 0
    assert await store.count_differences(generation) == 0


async def test_an_older_read_store_gets_the_fee_columns_and_keeps_its_rows(
    store: ReadStore, make_read_store: MakeReadStore, read_store_url: str
) -> None:
    """Migration 0006 on a generation at schema 5: every row kept, fees 0, then fees projected."""
    log = Log()
    batches = await seed(store, log)
    accounts = await store.accounts(["m1", "a1", "o1"])
    history = await store.history("a1", HistoryFilter(), 0, 10)
    await store.close()
    await run_statements(read_store_url, list(UNDO_MIGRATION_6))
    reopened = make_read_store()
    await reopened.open()
    assert await reopened.accounts(["m1", "a1", "o1"]) == accounts
    assert await reopened.history("a1", HistoryFilter(), 0, 10) == history
    assert {m.fee_points for m in history} == {0}
    # a1 has 25 left: it gives o1 10 and pays a fee of 2 + 15 per mille (3) to m1.
    paid = [
        fee_events.rules_set(log, fee_events.transfer_fee(2, 15, "m1")),
        *fee_events.one_unit(
            log,
            FeeTransfer("a1", "o1", "m1", amount=10, fee=3),
            source_after=12,
            target_after=15,
            fee_after=73,
        ),
    ]
    await apply(reopened, paid)
    (out,) = await reopened.history("a1", HistoryFilter(newest_first=True), 0, 1)
    assert (out.available_delta_points, out.fee_points) == (-13, 3)
    rules = await reopened.program_rules()
    assert rules is not None
    assert rules.fee_schedule_version == 1
    assert await _ok(reopened) == 0
    # The migrated generation compares equal to one built with every migration from the start.
    generation = await reopened.create_generation()
    for batch in [*batches, paid]:
        await apply(reopened, batch, generation)
    assert await reopened.count_differences(generation) == 0
