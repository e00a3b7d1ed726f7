"""Cooling-off refunds in the pure projections: the trade's status, the points, conservation.

A buyer may have a settled purchase refunded. `RefundRequested` makes the trade REFUNDING and
`BoughtPointsReturned` takes its quantity from the buyer (a PURCHASE_RETURNED movement); the
points are then in flight back to the seller (`trade-<id>/refund`) until `TradeRefunded` and
`SoldPointsReturned` (REFUNDED; a SALE_RETURNED movement on the seller), or `RefundDeclined`
and `BoughtPointsRestored` (SETTLED again; a PURCHASE_RESTORED movement on the buyer). Each
trade event notifies both sides (TRADE_REFUNDING, TRADE_REFUNDED, REFUND_DECLINED) with
`trade_refund` details. Hypothesis checks that I1 and I2 hold after every batch however a log
of refunds is cut, and that the cut does not change the rows.

The story: seller s (acme) mints 100 and sells 20 at 10 CNY to buyer b (other), who pays 202
(a fee of 2): s has 80 available, b 20.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server.domain import events as domain_events
from pointex.server.domain import market_events
from pointex.server.domain.values import Money
from pointex.server.eventstore import codec
from pointex.server.query import invariants, market_views, views
from pointex.server.query.projections import keys_of, order_ids_of, project_batch
from pointex.server.query.projections.refunds import refund_in_flight
from pointex.server.query.readstore.port import Audit, Changes, InFlightRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.market_events import CURRENCY, MarketLog, new_id
from tests.unit.test_market_projections import BUY, SELL, MarketRows

MARKET = "PTS-CNY"
Payload = TypeVar("Payload", bound=Message)
QUANTITY, PRICE, AMOUNT_DUE = 20, 10, 202


class RefundLog(MarketLog):
    """Market events, and the trade and account events of cooling-off refunds."""

    def requested(self, trade_id: str, refund_id: str, due: int = AMOUNT_DUE) -> events_pb2.Event:
        """RefundRequested of all the amount due."""
        payload = events_pb2.RefundRequested(
            trade_id=trade_id,
            refund_id=refund_id,
            amount=common_pb2.Money(amount_minor=due, currency=CURRENCY),
        )
        return self.event(f"trade-{trade_id}", "refund_requested", payload)

    def refunded(self, trade_id: str, refund_id: str) -> events_pb2.Event:
        """TradeRefunded with the provider's refund id."""
        payload = events_pb2.TradeRefunded(
            trade_id=trade_id, refund_id=refund_id, provider_refund_id=f"pr-{refund_id}"
        )
        return self.event(f"trade-{trade_id}", "trade_refunded", payload)

    def declined(self, trade_id: str, refund_id: str) -> events_pb2.Event:
        """RefundDeclined for good by the provider."""
        payload = events_pb2.RefundDeclined(
            trade_id=trade_id, refund_id=refund_id, reason="insufficient_merchant_balance"
        )
        return self.event(f"trade-{trade_id}", "refund_declined", payload)

    def points(
        self, field: str, account_id: str, trade_id: str, amount: int, after: int
    ) -> events_pb2.Event:
        """BoughtPointsReturned, SoldPointsReturned or BoughtPointsRestored (by `field`)."""
        payload = getattr(events_pb2, _MESSAGES[field])(
            account_id=account_id, trade_id=trade_id, amount_points=amount, available_points=after
        )
        return self.event(f"account-{account_id}", field, payload)

    def ask(self, t: Trade, refund_id: str, buyer_after: int) -> list[events_pb2.Event]:
        """A refund asked: RefundRequested, then the buyer's BoughtPointsReturned (one unit)."""
        return [
            self.requested(t.trade_id, refund_id),
            self.points("bought_points_returned", t.buyer, t.trade_id, t.quantity, buyer_after),
        ]

    def make(self, t: Trade, refund_id: str, seller_after: int) -> list[events_pb2.Event]:
        """The refund made: TradeRefunded, then the seller's SoldPointsReturned (one unit)."""
        return [
            self.refunded(t.trade_id, refund_id),
            self.points("sold_points_returned", t.seller, t.trade_id, t.quantity, seller_after),
        ]

    def decline(self, t: Trade, refund_id: str, buyer_after: int) -> list[events_pb2.Event]:
        """The refund declined: RefundDeclined, then the buyer's BoughtPointsRestored."""
        return [
            self.declined(t.trade_id, refund_id),
            self.points("bought_points_restored", t.buyer, t.trade_id, t.quantity, buyer_after),
        ]


_MESSAGES = {
    "bought_points_returned": "BoughtPointsReturned",
    "sold_points_returned": "SoldPointsReturned",
    "bought_points_restored": "BoughtPointsRestored",
}


@dataclasses.dataclass(frozen=True)
class Trade:
    """A settled trade of the story: its id, its sides (accounts and orders), its quantity."""

    trade_id: str
    seller: str
    buyer: str
    sell_order: str
    buy_order: str
    quantity: int = QUANTITY


def settled_trade(
    log: RefundLog, seller: str, buyer: str, *, seller_available: int, buyer_available: int
) -> tuple[Trade, list[events_pb2.Event]]:
    """SELL 20 @ 10 held and placed, BUY 20 matches it, paid and settled.

    `seller_available` is the seller's available points once 20 are held; `buyer_available`
    the buyer's once the 20 arrive.
    """
    sell, buy = new_id("sell"), new_id("buy")
    events = [
        log.held(seller, sell, MARKET, QUANTITY, PRICE, available=seller_available, held=20),
        log.placed(sell, MARKET, seller, SELL, QUANTITY, PRICE),
        log.placed(buy, MARKET, buyer, BUY, QUANTITY, PRICE),
    ]
    trade_id, matched = log.matched(
        MARKET, (buy, buyer), (sell, seller), QUANTITY, PRICE, buy_open=0, sell_open=0
    )
    events += [
        *matched,
        log.payment_requested(trade_id, AMOUNT_DUE),
        log.payment_confirmed(trade_id, AMOUNT_DUE),
        *log.settlement(
            trade_id,
            (seller, sell),
            (buyer, buy),
            QUANTITY,
            QUANTITY * PRICE,
            seller_held=0,
            buyer_available=buyer_available,
        ),
    ]
    return Trade(trade_id, seller, buyer, sell, buy), events


def story(log: RefundLog) -> tuple[Trade, list[events_pb2.Event]]:
    """The module's story: s 80 available, b 20, one settled trade."""
    events = [
        log.market(MARKET),
        log.opened("s", "acme"),
        log.opened("b", "other"),
        log.minted("s", 100, after=100),
    ]
    trade, sold = settled_trade(log, "s", "b", seller_available=80, buyer_available=20)
    return trade, events + sold


class RefundRows(MarketRows):
    """The market read models with the points in flight as rows, and the supply's totals."""

    def __init__(self) -> None:
        """Start empty at checkpoint 0."""
        super().__init__()
        self.in_flight_rows: dict[str, InFlightRow] = {}
        self.changes: list[Changes] = []

    def apply(self, events: list[events_pb2.Event]) -> Changes:
        """Project a batch with the stored rows it needs, and keep its changes as a store would.

        Points in flight are removed before they are added, as the read stores apply them.
        """
        keys = keys_of(events)
        trades = {i: self.trades[i] for i in keys.trade_ids if i in self.trades}
        order_ids = [*keys.order_ids, *order_ids_of(trades.values())]
        flying = {i: self.in_flight_rows[i] for i in keys.in_flight_ids if i in self.in_flight_rows}
        changes = project_batch(
            events,
            {i: self.accounts[i] for i in keys.account_ids if i in self.accounts},
            self.position,
            orders={i: self.orders[i] for i in order_ids if i in self.orders},
            trades=trades,
            in_flight=flying,
        )
        for process_id in changes.in_flight_removed:
            del self.in_flight_rows[process_id]
        self.in_flight_rows.update({row.process_id: row for row in changes.in_flight_added})
        self._keep(changes)
        self.changes.append(changes)
        return changes

    def _keep(self, changes: Changes) -> None:
        """Keep a batch's changes, as MarketRows does, with in flight from the rows."""
        self.position = changes.position
        self.accounts.update({row.account_id: row for row in changes.accounts})
        self.orders.update({row.order_id: row for row in changes.orders})
        self.trades.update({row.trade_id: row for row in changes.trades})
        for level in changes.levels:
            key = (level.market_id, level.side, level.price_minor)
            quantity, count = self.levels.get(key, (0, 0))
            self.levels[key] = (quantity + level.quantity_points, count + level.order_count)
            if self.levels[key][1] == 0:
                assert self.levels.pop(key) == (0, 0)
        for process_id in changes.escrow_removed:
            del self.escrow[process_id]
        self.escrow.update(
            {e.process_id: (e.account_id, e.amount_points) for e in changes.escrow_added}
        )
        self.in_flight = {k: row.amount_points for k, row in self.in_flight_rows.items()}
        self.minted += changes.minted_points
        self.kinds += [m.kind for m in changes.movements]
        self.notes += [
            query_service_pb2.Notification.FromString(n.body) for n in changes.notifications
        ]
        self.owners += [n.owner_partner_id for n in changes.notifications]

    def audit(self) -> Audit:
        """Return the figures CheckInvariants judges for I1."""
        accounts = self.accounts.values()
        return Audit(
            position=self.position,
            minted_points=self.minted,
            burned_points=0,
            available_points=sum(a.available_points for a in accounts),
            held_points=sum(a.held_points for a in accounts),
            pending_points=sum(a.pending_points for a in accounts),
            in_flight_points=sum(self.in_flight.values()),
            account_count=len(self.accounts),
        )

    def balanced(self) -> None:
        """Assert CheckInvariants' I1 and the figures of I2 and the books hold."""
        answer = invariants.check(self.audit(), 10)
        assert answer.ok, answer
        self.check_invariants()


def _balances(rows: RefundRows) -> dict[str, tuple[int, int]]:
    return {i: (a.available_points, a.held_points) for i, a in sorted(rows.accounts.items())}


def _refund_notes(changes: Changes) -> list[tuple[str, str, query_service_pb2.Notification]]:
    return [
        (n.kind, n.account_id, query_service_pb2.Notification.FromString(n.body))
        for n in changes.notifications
    ]


def test_a_refund_asked_takes_the_purchase_from_the_buyer_into_flight() -> None:
    """Buyer b 20 -> 0 (PURCHASE_RETURNED), trade REFUNDING, 20 in flight (trade-<id>/refund)."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply(events)
    changes = rows.apply(log.ask(trade, "r1", buyer_after=0))
    (move,) = changes.movements
    assert (move.account_id, move.kind, move.available_delta_points) == (
        "b",
        "PURCHASE_RETURNED",
        -20,
    )
    assert (move.available_points, move.held_delta_points) == (0, 0)
    assert (move.trade_id, move.order_id, move.counterparty_account_id) == (
        trade.trade_id,
        trade.buy_order,
        "",
    )
    assert views.movement_message(move).kind == common_pb2.MOVEMENT_KIND_PURCHASE_RETURNED
    assert rows.trades[trade.trade_id].status == "REFUNDING"
    (flying,) = changes.in_flight_added
    assert flying == InFlightRow(refund_in_flight(trade.trade_id), "b", 20, move.position)
    assert _balances(rows) == {"b": (0, 0), "s": (80, 0)}
    assert rows.audit().in_flight_points == 20
    rows.balanced()


def test_a_refund_made_brings_the_points_back_to_the_seller() -> None:
    """Seller s 80 -> 100 (SALE_RETURNED), the trade REFUNDED, nothing left in flight."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply([*events, *log.ask(trade, "r1", buyer_after=0)])
    changes = rows.apply(log.make(trade, "r1", seller_after=100))
    (move,) = changes.movements
    assert (move.account_id, move.kind, move.available_delta_points, move.available_points) == (
        "s",
        "SALE_RETURNED",
        20,
        100,
    )
    assert (move.trade_id, move.order_id) == (trade.trade_id, trade.sell_order)
    assert changes.in_flight_removed == (refund_in_flight(trade.trade_id),)
    assert rows.in_flight == {}
    row = rows.trades[trade.trade_id]
    assert row.status == "REFUNDED"
    # The match happened and settled: the orders keep it, the trade keeps its settlement time.
    assert row.settled_at_us > 0
    for order_id in (trade.buy_order, trade.sell_order):
        order = rows.orders[order_id]
        assert (order.status, order.settled_quantity_points) == ("FILLED", 20)
    assert _balances(rows) == {"b": (0, 0), "s": (100, 0)}
    assert market_views.trade_message(row, None).status == common_pb2.TRADE_STATUS_REFUNDED
    rows.balanced()


def test_a_refund_declined_gives_the_buyer_its_points_back_and_settles_the_trade_again() -> None:
    """Buyer b 0 -> 20 (PURCHASE_RESTORED), the trade SETTLED again, nothing in flight."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply([*events, *log.ask(trade, "r1", buyer_after=0)])
    changes = rows.apply(log.decline(trade, "r1", buyer_after=20))
    (move,) = changes.movements
    assert (move.account_id, move.kind, move.available_delta_points, move.available_points) == (
        "b",
        "PURCHASE_RESTORED",
        20,
        20,
    )
    assert changes.in_flight_removed == (refund_in_flight(trade.trade_id),)
    assert rows.trades[trade.trade_id].status == "SETTLED"
    assert _balances(rows) == {"b": (20, 0), "s": (80, 0)}
    assert rows.kinds[-3:] == ["TRADE_BOUGHT", "PURCHASE_RETURNED", "PURCHASE_RESTORED"]
    rows.balanced()


def test_each_refund_step_notifies_both_sides_with_the_refund_details() -> None:
    """TRADE_REFUNDING, then TRADE_REFUNDED (provider's id) or REFUND_DECLINED (reason)."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply(events)
    asked = rows.apply(log.ask(trade, "r1", buyer_after=0))
    made = rows.apply(log.make(trade, "r1", seller_after=100))
    assert [(k, a) for k, a, _ in _refund_notes(asked)] == [
        ("TRADE_REFUNDING", "b"),
        ("TRADE_REFUNDING", "s"),
    ]
    assert [n.owner_partner_id for n in asked.notifications] == ["other", "acme"]
    for kind, account_id, note in _refund_notes(asked) + _refund_notes(made):
        assert note.WhichOneof("details") == "trade_refund"
        details = note.trade_refund
        assert details.refund_id == "r1"
        assert (details.amount.amount_minor, details.amount.currency) == (AMOUNT_DUE, CURRENCY)
        # Each side sees its own ids only, as GetTrade shows the trade.
        assert details.trade.buyer_account_id == ("b" if account_id == "b" else "")
        assert details.trade.seller_account_id == ("s" if account_id == "s" else "")
        if kind == "TRADE_REFUNDING":
            assert note.kind == query_service_pb2.NOTIFICATION_KIND_TRADE_REFUNDING
            assert details.trade.status == common_pb2.TRADE_STATUS_REFUNDING
        else:
            assert note.kind == query_service_pb2.NOTIFICATION_KIND_TRADE_REFUNDED
            assert details.trade.status == common_pb2.TRADE_STATUS_REFUNDED
            assert (details.provider_refund_id, details.declined_reason) == ("pr-r1", "")
    assert [k for k, _, _ in _refund_notes(made)] == ["TRADE_REFUNDED"] * 2


def test_a_declined_refund_notifies_both_sides_why() -> None:
    """REFUND_DECLINED to b and s: the trade SETTLED, the provider's reason, no refund id."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply([*events, *log.ask(trade, "r1", buyer_after=0)])
    changes = rows.apply(log.decline(trade, "r1", buyer_after=20))
    notes = _refund_notes(changes)
    assert [(k, a) for k, a, _ in notes] == [("REFUND_DECLINED", "b"), ("REFUND_DECLINED", "s")]
    for _, _, note in notes:
        assert note.kind == query_service_pb2.NOTIFICATION_KIND_REFUND_DECLINED
        details = note.trade_refund
        assert details.trade.status == common_pb2.TRADE_STATUS_SETTLED
        assert (details.declined_reason, details.provider_refund_id) == (
            "insufficient_merchant_balance",
            "",
        )


def test_a_refund_asked_again_after_a_decline_in_one_batch_replaces_the_key() -> None:
    """Ask, decline, ask again, make, all in one batch or cut after each event: same rows."""
    log = RefundLog()
    trade, events = story(log)
    refunds = [
        *log.ask(trade, "r1", buyer_after=0),
        *log.decline(trade, "r1", buyer_after=20),
        *log.ask(trade, "r2", buyer_after=0),
    ]
    whole, cut = RefundRows(), RefundRows()
    whole.apply(events)
    cut.apply(events)
    changes = whole.apply(refunds)
    # The key ended and started again within the batch: only its last state is written.
    assert changes.in_flight_removed == ()
    (flying,) = changes.in_flight_added
    assert (flying.process_id, flying.amount_points) == (refund_in_flight(trade.trade_id), 20)
    for event in refunds:
        cut.apply([event])
        cut.balanced()
    assert whole.in_flight_rows == cut.in_flight_rows
    # Stored, then removed and added again in the next batch: removed first, then added.
    again = cut.apply(
        [*log.decline(trade, "r2", buyer_after=20), *log.ask(trade, "r3", buyer_after=0)]
    )
    assert again.in_flight_removed == (refund_in_flight(trade.trade_id),)
    assert [row.process_id for row in again.in_flight_added] == [refund_in_flight(trade.trade_id)]
    cut.apply(log.make(trade, "r3", seller_after=100))
    assert cut.trades[trade.trade_id].status == "REFUNDED"
    assert _balances(cut) == {"b": (0, 0), "s": (100, 0)}
    cut.balanced()


def _decoded(event: object, message: type[Payload]) -> Payload:
    """Return a domain event as the command side stores it, read as its proto message."""
    return message.FromString(codec.encode(event).data)


def test_the_command_sides_own_refund_events_project() -> None:
    """The refund's events as the trade and the accounts encode them (codec) project."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply(events)
    t = trade.trade_id
    unit = [
        log.event(
            f"trade-{t}",
            "refund_requested",
            _decoded(
                market_events.RefundRequested(t, "r1", Money(AMOUNT_DUE, CURRENCY)),
                events_pb2.RefundRequested,
            ),
        ),
        log.event(
            "account-b",
            "bought_points_returned",
            _decoded(
                domain_events.BoughtPointsReturned("b", t, 20, 0, ()),
                events_pb2.BoughtPointsReturned,
            ),
        ),
        log.event(
            f"trade-{t}",
            "trade_refunded",
            _decoded(market_events.TradeRefunded(t, "r1", "pr-1"), events_pb2.TradeRefunded),
        ),
        log.event(
            "account-s",
            "sold_points_returned",
            _decoded(
                domain_events.SoldPointsReturned("s", t, 20, 100, ()),
                events_pb2.SoldPointsReturned,
            ),
        ),
    ]
    changes = rows.apply(unit)
    assert [m.kind for m in changes.movements] == ["PURCHASE_RETURNED", "SALE_RETURNED"]
    assert rows.trades[t].status == "REFUNDED"
    rows.balanced()


_UNITS = {
    "ask": (RefundLog.requested, "bought_points_returned"),
    "make": (RefundLog.refunded, "sold_points_returned"),
    "decline": (RefundLog.declined, "bought_points_restored"),
}


@pytest.mark.parametrize(
    ("step", "account_id", "amount", "after", "sound"),
    [
        pytest.param("ask", "b", 20, 0, True, id="ask"),
        pytest.param("ask", "b", 20, 1, False, id="ask-another-balance"),
        pytest.param("ask", "b", 19, 1, False, id="ask-part-of-the-trade"),
        pytest.param("ask", "s", 20, 60, False, id="ask-the-seller-returns"),
        pytest.param("make", "s", 20, 100, True, id="make"),
        pytest.param("make", "s", 20, 99, False, id="make-another-balance"),
        pytest.param("make", "b", 20, 20, False, id="make-the-buyer-receives"),
        pytest.param("decline", "b", 20, 20, True, id="decline"),
        pytest.param("decline", "s", 20, 100, False, id="decline-the-seller-restored"),
    ],
)
def test_a_refund_step_that_disagrees_with_its_trade_stops_the_projection(
    step: str, account_id: str, amount: int, after: int, sound: bool
) -> None:
    """Paired checks: the trade's own side, its whole quantity, the balance the event states."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply(events)
    if step != "ask":
        rows.apply(log.ask(trade, "r1", buyer_after=0))
    trade_event, field = _UNITS[step]
    unit = [
        trade_event(log, trade.trade_id, "r1"),
        log.points(field, account_id, trade.trade_id, amount, after),
    ]
    if sound:
        rows.apply(unit)
        rows.balanced()
        return
    with pytest.raises(AssertionError):
        rows.apply(unit)


def test_refund_events_out_of_their_order_stop_the_projection() -> None:
    """A refund made before it was asked, or the points back before the trade says so."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply(events)
    with pytest.raises(AssertionError):
        RefundRows().apply([*events, log.refunded(trade.trade_id, "r1")])
    with pytest.raises(AssertionError):
        rows.apply([log.points("bought_points_returned", "b", trade.trade_id, 20, 0)])


def test_a_refund_of_another_amount_than_the_amount_due_stops_the_projection() -> None:
    """The buyer gets back all it paid: a RefundRequested of 200 (not 202) is a bug upstream."""
    log, rows = RefundLog(), RefundRows()
    trade, events = story(log)
    rows.apply(events)
    with pytest.raises(AssertionError):
        rows.apply([log.requested(trade.trade_id, "r1", due=200)])


# --- Any cut of a log of refunds ---------------------------------------------------------------

SELLERS, BUYERS = ("s0", "s1"), ("b0", "b1")
steps = st.lists(
    st.tuples(
        st.sampled_from(["ask", "make", "decline", "give"]),
        st.integers(0, 3),  # a trade
        st.integers(1, 30),  # an amount (give)
    ),
    max_size=25,
)


@dataclasses.dataclass
class _Book:
    """What the log builder tracks: balances, and each trade's refund state."""

    available: dict[str, int]
    state: dict[str, str]  # trade id -> SETTLED | REFUNDING | REFUNDED
    refund_ids: dict[str, str] = dataclasses.field(default_factory=dict)  # the latest asked
    asks: int = 0


def _refund_log(moves: list[tuple[str, int, int]]) -> list[events_pb2.Event]:
    """Four settled trades (each seller sells to each buyer), then refunds and gifts."""
    log = RefundLog()
    events = [log.market(MARKET)]
    events += [log.opened(s, "acme") for s in SELLERS] + [log.opened(b, "other") for b in BUYERS]
    events += [log.minted(s, 100, after=100) for s in SELLERS]
    book = _Book(available={**dict.fromkeys(SELLERS, 100), **dict.fromkeys(BUYERS, 0)}, state={})
    trades: list[Trade] = []
    for seller in SELLERS:
        for buyer in BUYERS:
            book.available[seller] -= QUANTITY
            book.available[buyer] += QUANTITY
            trade, sold = settled_trade(
                log,
                seller,
                buyer,
                seller_available=book.available[seller],
                buyer_available=book.available[buyer],
            )
            trades.append(trade)
            book.state[trade.trade_id] = "SETTLED"
            events += sold
    for step, i, amount in moves:
        events += _step(log, book, trades[i], step, amount)
    return events


def _step(log: RefundLog, book: _Book, t: Trade, step: str, amount: int) -> list[events_pb2.Event]:
    """Return the events of one step, if it can happen now (else none)."""
    state, available = book.state[t.trade_id], book.available
    if step == "ask" and state == "SETTLED" and available[t.buyer] >= t.quantity:
        book.asks += 1
        available[t.buyer] -= t.quantity
        book.state[t.trade_id] = "REFUNDING"
        book.refund_ids[t.trade_id] = f"r{book.asks}"
        return log.ask(t, book.refund_ids[t.trade_id], available[t.buyer])
    refund_id = book.refund_ids.get(t.trade_id, "")
    if step == "make" and state == "REFUNDING":
        available[t.seller] += t.quantity
        book.state[t.trade_id] = "REFUNDED"
        return log.make(t, refund_id, available[t.seller])
    if step == "decline" and state == "REFUNDING":
        available[t.buyer] += t.quantity
        book.state[t.trade_id] = "SETTLED"
        return log.decline(t, refund_id, available[t.buyer])
    other = BUYERS[1] if t.buyer == BUYERS[0] else BUYERS[0]
    if step == "give" and available[t.buyer] >= amount:
        available[t.buyer] -= amount
        available[other] += amount
        return log.transfer(t.buyer, other, amount, available[t.buyer], available[other])
    return []


@settings(max_examples=60, deadline=None)
@given(moves=steps, cuts=st.lists(st.integers(1, 200), max_size=12))
def test_refunds_conserve_points_and_replay_equal_however_the_log_is_cut(
    moves: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    """I1 and I2 hold after every batch of any cut; a cut log projects the same rows."""
    events = _refund_log(moves)
    cut_rows, whole_rows = RefundRows(), RefundRows()
    whole_rows.apply(events)
    whole_rows.balanced()
    start = 0
    for cut in [*sorted(set(cuts)), len(events)]:
        end = min(cut, len(events))
        if start < end:
            cut_rows.apply(events[start:end])
            cut_rows.balanced()
            start = end
    assert {k: dataclasses.asdict(v) for k, v in cut_rows.accounts.items()} == {
        k: dataclasses.asdict(v) for k, v in whole_rows.accounts.items()
    }
    assert cut_rows.trades == whole_rows.trades
    assert cut_rows.orders == whole_rows.orders
    assert cut_rows.kinds == whole_rows.kinds
    assert cut_rows.notes == whole_rows.notes
    assert cut_rows.in_flight_rows == whole_rows.in_flight_rows
    refunding = {t for t, row in whole_rows.trades.items() if row.status == "REFUNDING"}
    assert set(whole_rows.in_flight_rows) == {refund_in_flight(t) for t in refunding}
