"""Cooling-off refunds in the read-store contract, on SQLite and on PostgreSQL.

A refund's movements (PURCHASE_RETURNED, SALE_RETURNED, PURCHASE_RESTORED), the trade's
statuses (REFUNDING, REFUNDED, SETTLED again) and the refund notifications read back as the
projection wrote them; the refund's points in flight (`trade-<id>/refund`) keep
CheckInvariants' I1 and I2 holding after every event, across a restart and in a rebuilt
generation; and a refund asked again after a decline, in the batch that ends the last one,
replaces its in-flight row (removals are written before additions). No migration: statuses
and kinds are stored by name. The fixtures are those of test_read_store.
"""

from __future__ import annotations

import itertools

from pointex.server.query import invariants, market_views, views
from pointex.server.query.projections.refunds import refund_in_flight
from pointex.server.query.readstore.market_rows import TradeFilter
from pointex.server.query.readstore.port import HistoryFilter, NotificationFilter, ReadStore
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.integration import test_read_store
from tests.integration.test_read_store import MakeReadStore, apply
from tests.unit.test_refund_projections import RefundLog, Trade, story

# The read-store fixtures of the contract suite, shared as they are.
read_store_url = test_read_store.read_store_url
make_read_store = test_read_store.make_read_store
store = test_read_store.store

REFUND_NOTICES = NotificationFilter(kinds=("TRADE_REFUNDING", "TRADE_REFUNDED", "REFUND_DECLINED"))


def refund_log(log: RefundLog) -> tuple[Trade, list[list[events_pb2.Event]]]:
    """Batches: the story's settled trade; asked (r1), declined; asked again (r2), made."""
    trade, events = story(log)
    return trade, [
        events,
        log.ask(trade, "r1", buyer_after=0),
        log.decline(trade, "r1", buyer_after=20),
        log.ask(trade, "r2", buyer_after=0),
        log.make(trade, "r2", seller_after=100),
    ]


async def _checked(store: ReadStore) -> query_service_pb2.CheckInvariantsResponse:
    """Assert CheckInvariants finds nothing (I1, I2 and the bounds); return its answer."""
    answer = invariants.check(await store.audit(10), 10)
    assert answer.ok, answer
    return answer


async def test_refund_rows_round_trip_and_survive_a_restart(
    store: ReadStore, make_read_store: MakeReadStore
) -> None:
    """Movements, the REFUNDED trade and six notifications read back after reopening."""
    trade, batches = refund_log(RefundLog())
    for batch in batches:
        await apply(store, batch)
    await store.close()
    reopened = make_read_store()
    await reopened.open()
    refund_kinds = ("PURCHASE_RETURNED", "PURCHASE_RESTORED", "SALE_RETURNED")
    bought = await reopened.history("b", HistoryFilter(kinds=refund_kinds), 0, 10)
    assert [(m.kind, m.available_delta_points, m.available_points) for m in bought] == [
        ("PURCHASE_RETURNED", -20, 0),
        ("PURCHASE_RESTORED", 20, 20),
        ("PURCHASE_RETURNED", -20, 0),
    ]
    assert {m.trade_id for m in bought} == {trade.trade_id}
    (sold,) = await reopened.history("s", HistoryFilter(kinds=refund_kinds), 0, 10)
    assert (sold.kind, sold.available_delta_points, sold.available_points) == (
        "SALE_RETURNED",
        20,
        100,
    )
    assert views.movement_message(sold).kind == common_pb2.MOVEMENT_KIND_SALE_RETURNED
    (row,) = (await reopened.trades([trade.trade_id])).values()
    assert market_views.trade_message(row, None).status == common_pb2.TRADE_STATUS_REFUNDED
    listed = await reopened.list_trades(TradeFilter(statuses=("REFUNDED",)), 0, 10)
    assert [t.trade_id for t in listed] == [trade.trade_id]
    assert await reopened.list_trades(TradeFilter(statuses=("SETTLED",)), 0, 10) == []
    notes = await reopened.notifications(REFUND_NOTICES, (0, 0), 20)
    assert [(n.kind, n.account_id) for n in notes] == [
        (kind, account)
        for kind in ("TRADE_REFUNDING", "REFUND_DECLINED", "TRADE_REFUNDING", "TRADE_REFUNDED")
        for account in ("b", "s")
    ]
    made = query_service_pb2.Notification.FromString(notes[-2].body).trade_refund
    assert (made.refund_id, made.provider_refund_id, made.amount.amount_minor) == (
        "r2",
        "pr-r2",
        202,
    )
    accounts = await reopened.accounts(["b", "s"])
    assert {a: r.available_points for a, r in accounts.items()} == {"b": 0, "s": 100}
    answer = await _checked(reopened)
    assert (answer.in_flight_points, answer.available_points) == (0, 100)


async def test_i1_and_i2_hold_after_every_event_and_a_rebuild_compares_equal(
    store: ReadStore,
) -> None:
    """One event a batch: CheckInvariants passes each time, with 20 in flight while refunding."""
    _, batches = refund_log(RefundLog())
    events = [event for batch in batches for event in batch]
    refunds = len(events) - len(batches[0])
    flying = []
    for event in events:
        await apply(store, [event])
        flying.append((await _checked(store)).in_flight_points)
    # Each refund is in flight from the buyer's return (after its RefundRequested) to the
    # buyer's restoration or the seller's arrival (each after its trade event).
    assert flying[-refunds:] == [0, 20, 20, 0, 0, 20, 20, 0]
    generation = await store.create_generation()
    for start, end in itertools.pairwise([0, 7, len(events) - 3, len(events)]):
        await apply(store, events[start:end], generation)
        if end < len(events):
            assert await store.count_differences(generation) > 0
    assert await store.count_differences(generation) == 0


async def test_a_refund_asked_again_in_the_batch_of_its_decline_replaces_the_row(
    store: ReadStore,
) -> None:
    """Stored in flight (r1); one batch declines it and asks r2: one row, r2's position."""
    log = RefundLog()
    trade, events = story(log)
    await apply(store, events)
    await apply(store, log.ask(trade, "r1", buyer_after=0))
    key = refund_in_flight(trade.trade_id)
    (first,) = (await store.in_flight([key])).values()
    changes = await apply(
        store, [*log.decline(trade, "r1", buyer_after=20), *log.ask(trade, "r2", buyer_after=0)]
    )
    assert changes.in_flight_removed == (key,)
    (second,) = (await store.in_flight([key])).values()
    assert (second.account_id, second.amount_points) == ("b", 20)
    assert second.position > first.position
    assert second.position == changes.position
    answer = await _checked(store)
    assert answer.in_flight_points == 20
    await apply(store, log.make(trade, "r2", seller_after=100))
    assert await store.in_flight([key]) == {}
    assert (await _checked(store)).in_flight_points == 0
