"""The market projections are pure: orders, trades, books and escrow from synthetic events.

One scenario walks every market event: a SELL order partially filled, one trade settled, one
cancelled with its quantity returned to the still-resting order, an IOC remainder, one trade
cancelled after the order left the book (PointsReleased), a late confirmation flagged for
refund, a cancelled and a rejected SELL order. Rows are chained batch after batch as a read
store would keep them, so I1, I2 and the books can be checked after every batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pointex.server.query.projections import keys_of, order_ids_of, project_batch
from pointex.server.query.readstore.market_rows import OrderRow, TradeRow
from pointex.server.query.readstore.port import AccountRow, Changes
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.market_events import MarketLog, new_id

BUY, SELL = common_pb2.ORDER_SIDE_BUY, common_pb2.ORDER_SIDE_SELL
IOC = common_pb2.TIME_IN_FORCE_IOC


@dataclass
class MarketRows:
    """The read models as dictionaries: enough to chain batches in a pure test."""

    position: int = 0
    accounts: dict[str, AccountRow] = field(default_factory=dict)
    orders: dict[str, OrderRow] = field(default_factory=dict)
    trades: dict[str, TradeRow] = field(default_factory=dict)
    levels: dict[tuple[str, str, int], tuple[int, int]] = field(default_factory=dict)
    escrow: dict[str, tuple[str, int]] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    minted: int = 0
    kinds: list[str] = field(default_factory=list)  # movement kinds
    notes: list[query_service_pb2.Notification] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)  # of each notification

    def apply(self, events: list[events_pb2.Event]) -> Changes:
        """Project a batch against these rows and keep its changes, as a store would."""
        keys = keys_of(events)
        trades = {i: self.trades[i] for i in keys.trade_ids if i in self.trades}
        order_ids = [*keys.order_ids, *order_ids_of(trades.values())]
        changes = project_batch(
            events,
            {i: self.accounts[i] for i in keys.account_ids if i in self.accounts},
            self.position,
            orders={i: self.orders[i] for i in order_ids if i in self.orders},
            trades=trades,
        )
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
        for row in changes.in_flight_added:
            self.in_flight[row.process_id] = row.amount_points
        for process_id in changes.in_flight_removed:
            del self.in_flight[process_id]
        self.minted += changes.minted_points
        self.kinds += [m.kind for m in changes.movements]
        self.notes += [
            query_service_pb2.Notification.FromString(n.body) for n in changes.notifications
        ]
        self.owners += [n.owner_partner_id for n in changes.notifications]
        return changes

    def check_invariants(self) -> None:
        """Assert I1, I2 per account, the order identities and that books match the orders."""
        held = sum(a.available_points + a.held_points for a in self.accounts.values())
        assert held + sum(self.in_flight.values()) == self.minted
        expected = dict.fromkeys(self.accounts, 0)
        for order in self.orders.values():
            if order.side == "SELL" and order.resting:
                expected[order.account_id] += order.open_quantity_points
            total = order.open_quantity_points + order.filled_quantity_points
            assert total + order.cancelled_quantity_points == order.quantity_points, order
            assert 0 <= order.settled_quantity_points <= order.filled_quantity_points, order
        for trade in self.trades.values():
            if trade.status == "PENDING_PAYMENT":
                expected[trade.seller_account_id] += trade.quantity_points
        for account_id, amount in self.escrow.values():
            expected[account_id] += amount
        assert expected == {i: a.held_points for i, a in self.accounts.items()}
        books: dict[tuple[str, str, int], tuple[int, int]] = {}
        for order in self.orders.values():
            if order.resting:
                key = (order.market_id, order.side, order.limit_price_minor)
                quantity, count = books.get(key, (0, 0))
                books[key] = (quantity + order.open_quantity_points, count + 1)
        assert books == self.levels


@dataclass
class Scenario:
    """The ids of the scenario's accounts, orders and trades, and its events."""

    market: str
    seller: str
    buyer: str
    orders: dict[str, str]
    trades: dict[str, str]
    events: list[events_pb2.Event]


def scenario() -> Scenario:
    """Build the log of the scenario in the module docstring; balances are spelt out."""
    log = MarketLog()
    market, seller, buyer = "PTS-CNY", new_id("acme:s"), new_id("other:b")
    o = {name: new_id(name) for name in ("sell", "buy1", "buy2", "ioc", "cancel", "reject")}
    t: dict[str, str] = {}
    events = [
        log.market(market),
        log.opened(seller, "acme"),
        log.opened(buyer, "other"),
        log.minted(seller, 100, after=100),
        # SELL 60 @ 10 rests; BUY 20 @ 12 and BUY 10 @ 10 match it at 10.
        log.held(seller, o["sell"], market, 60, 10, available=40, held=60),
        log.placed(o["sell"], market, seller, SELL, 60, 10),
        log.placed(o["buy1"], market, buyer, BUY, 20, 12),
    ]
    t["settled"], matched = log.matched(
        market, (o["buy1"], buyer), (o["sell"], seller), 20, 10, buy_open=0, sell_open=40
    )
    events += [*matched, log.placed(o["buy2"], market, buyer, BUY, 10, 10)]
    t["returned"], matched = log.matched(
        market, (o["buy2"], buyer), (o["sell"], seller), 10, 10, buy_open=0, sell_open=30
    )
    events += matched
    # The first trade settles; the second fails and its 10 go back into the resting order.
    events += [
        log.payment_requested(t["settled"], 202),
        log.payment_confirmed(t["settled"], 202),
        *log.settlement(
            t["settled"],
            (seller, o["sell"]),
            (buyer, o["buy1"]),
            20,
            200,
            seller_held=40,
            buyer_available=20,
        ),
        log.payment_requested(t["returned"], 101),
        log.payment_failed(t["returned"], 101),
        log.trade_cancelled(t["returned"], common_pb2.TRADE_CANCEL_REASON_PAYMENT_FAILED),
        log.quantity_returned(o["sell"], market, t["returned"], 10, 40),
        # An IOC BUY 50 takes the 40 left (the SELL order leaves the book); 10 are cancelled.
        log.placed(o["ioc"], market, buyer, BUY, 50, 10, IOC),
    ]
    t["released"], matched = log.matched(
        market, (o["ioc"], buyer), (o["sell"], seller), 40, 10, buy_open=10, sell_open=0
    )
    events += [
        *matched,
        log.order_cancelled(
            o["ioc"], market, buyer, BUY, 10, common_pb2.ORDER_CANCEL_REASON_IOC_REMAINDER
        ),
        # Its payment deadline passes: the order no longer rests, so the points are released;
        # the buyer pays after all, too late: a refund is required.
        log.payment_requested(t["released"], 404),
        log.trade_cancelled(t["released"], common_pb2.TRADE_CANCEL_REASON_PAYMENT_DEADLINE_PASSED),
        log.released(seller, o["sell"], 40, available=80, held=0, trade_id=t["released"]),
        log.payment_confirmed(t["released"], 404, late=True),
        log.refund_required(t["released"], 404),
        # A SELL order cancelled on request, and one the market rejected.
        log.held(seller, o["cancel"], market, 5, 11, available=75, held=5),
        log.placed(o["cancel"], market, seller, SELL, 5, 11),
        log.order_cancelled(o["cancel"], market, seller, SELL, 5),
        log.released(seller, o["cancel"], 5, available=80, held=0),
        log.held(seller, o["reject"], market, 3, 9, available=77, held=3),
        log.rejected(o["reject"], market, seller, 3),
        log.released(seller, o["reject"], 3, available=80, held=0),
    ]
    return Scenario(market, seller, buyer, o, t, events)


def quantities(row: OrderRow) -> tuple[str, int, int, int, int]:
    """Return an order's status and its open, filled, settled and cancelled quantities."""
    return (
        row.status,
        row.open_quantity_points,
        row.filled_quantity_points,
        row.settled_quantity_points,
        row.cancelled_quantity_points,
    )


def test_the_whole_scenario_ends_with_the_quantities_the_order_identity_demands() -> None:
    """Every order ends with its status and quantities; every trade with its status and flags."""
    s = scenario()
    rows = MarketRows()
    rows.apply(s.events)
    rows.check_invariants()
    orders = {name: quantities(rows.orders[order_id]) for name, order_id in s.orders.items()}
    assert orders == {
        "sell": ("FILLED", 0, 20, 20, 40),
        "buy1": ("FILLED", 0, 20, 20, 0),
        "buy2": ("FILLED", 0, 0, 0, 10),
        "ioc": ("CANCELLED", 0, 0, 0, 50),
        "cancel": ("CANCELLED", 0, 0, 0, 5),
        "reject": ("REJECTED", 0, 0, 0, 3),
    }
    assert rows.orders[s.orders["ioc"]].cancel_reason == "IOC_REMAINDER"
    assert rows.orders[s.orders["reject"]].reject_reason == "MARKET_CLOSED"
    trades = {name: rows.trades[trade_id] for name, trade_id in s.trades.items()}
    assert {name: (t.status, t.cancel_reason, t.refund_required) for name, t in trades.items()} == {
        "settled": ("SETTLED", "", False),
        "returned": ("CANCELLED", "PAYMENT_FAILED", False),
        "released": ("CANCELLED", "PAYMENT_DEADLINE_PASSED", True),
    }
    assert trades["settled"].settled_at_us > trades["settled"].matched_at_us
    assert trades["settled"].checkout_url.endswith(s.trades["settled"])
    assert (
        trades["settled"].buyer_owner_partner_id,
        trades["settled"].seller_owner_partner_id,
    ) == (
        "other",
        "acme",
    )
    seller, buyer = rows.accounts[s.seller], rows.accounts[s.buyer]
    assert (seller.available_points, seller.held_points) == (80, 0)
    assert (buyer.available_points, buyer.held_points) == (20, 0)
    assert rows.levels == {}
    assert rows.escrow == {}
    assert rows.in_flight == {}


def test_escrow_movements_carry_their_kinds_deltas_and_references() -> None:
    """PointsHeld/Released/Sold/Bought are ESCROW_HOLD/RELEASE and TRADE_SOLD/BOUGHT movements."""
    s = scenario()
    rows = MarketRows()
    changes = rows.apply(s.events)
    market = [m for m in changes.movements if m.kind != "MINT"]
    assert [(m.kind, m.available_delta_points, m.held_delta_points) for m in market] == [
        ("ESCROW_HOLD", -60, 60),
        ("TRADE_SOLD", 0, -20),
        ("TRADE_BOUGHT", 20, 0),
        ("ESCROW_RELEASE", 40, -40),
        ("ESCROW_HOLD", -5, 5),
        ("ESCROW_RELEASE", 5, -5),
        ("ESCROW_HOLD", -3, 3),
        ("ESCROW_RELEASE", 3, -3),
    ]
    sold = market[1]
    assert (sold.order_id, sold.trade_id, sold.held_points) == (
        s.orders["sell"],
        s.trades["settled"],
        40,
    )
    assert market[3].trade_id == s.trades["released"]
    assert market[4].trade_id == ""


def test_every_cut_of_the_log_keeps_i1_i2_and_the_books_and_gives_the_same_rows() -> None:
    """One event per batch: I1, I2 (with steps in flight) and the books hold after each."""
    s = scenario()
    whole, cut = MarketRows(), MarketRows()
    whole.apply(s.events)
    for event in s.events:
        cut.apply([event])
        cut.check_invariants()
    assert cut.orders == whole.orders
    assert cut.trades == whole.trades
    assert cut.accounts == whole.accounts
    assert [n.SerializeToString() for n in cut.notes] == [
        n.SerializeToString() for n in whole.notes
    ]


def test_the_book_shows_resting_orders_by_price_level() -> None:
    """Levels add the open quantity and count of resting orders; fills and cancels remove them."""
    s = scenario()
    rows = MarketRows()
    placed_sell = next(
        i for i, e in enumerate(s.events) if e.WhichOneof("payload") == "trade_matched"
    )
    rows.apply(s.events[:placed_sell])
    assert rows.levels == {
        (s.market, "SELL", 10): (60, 1),
        (s.market, "BUY", 12): (20, 1),
    }
    rows.apply(s.events[placed_sell : placed_sell + 2])
    assert rows.levels == {(s.market, "SELL", 10): (40, 1)}


def test_a_held_sell_order_is_pending_and_in_flight_until_placed() -> None:
    """Between PointsHeld and OrderPlaced the order is PENDING and its points an escrow step."""
    log, rows = MarketLog(), MarketRows()
    account, order_id = new_id("acme:a"), new_id("o")
    rows.apply(
        [log.market("PTS-CNY"), log.opened(account, "acme"), log.minted(account, 9, after=9)]
    )
    changes = rows.apply([log.held(account, order_id, "PTS-CNY", 4, 7, available=5, held=4)])
    assert changes.orders[0].status == "PENDING"
    assert [(e.process_id, e.amount_points) for e in changes.escrow_added] == [
        (f"order-{order_id}", 4)
    ]
    assert changes.levels == ()
    rows.check_invariants()
    placed = rows.apply([log.placed(order_id, "PTS-CNY", account, SELL, 4, 7)])
    assert placed.escrow_removed == (f"order-{order_id}",)
    assert quantities(placed.orders[0]) == ("OPEN", 4, 0, 0, 0)
    assert placed.orders[0].client_order_id == f"c-{order_id}"
    rows.check_invariants()


def test_market_notifications_go_to_each_side_as_its_owner_sees_it() -> None:
    """Matched, payment required, settled, cancelled, refund, filled, cancelled and rejected."""
    s = scenario()
    rows = MarketRows()
    rows.apply(s.events)
    kinds = [
        (query_service_pb2.NotificationKind.Name(n.kind).removeprefix("NOTIFICATION_KIND_"), owner)
        for n, owner in zip(rows.notes, rows.owners, strict=True)
        if n.WhichOneof("details") != "points_moved"
    ]
    assert kinds == [
        ("ORDER_FILLED", "other"),  # the first match empties BUY 20 (TradeMatched)
        ("TRADE_MATCHED", "other"), ("TRADE_MATCHED", "acme"),  # then TradeCreated
        ("ORDER_FILLED", "other"),
        ("TRADE_MATCHED", "other"), ("TRADE_MATCHED", "acme"),
        ("PAYMENT_REQUIRED", "other"),
        ("TRADE_SETTLED", "other"), ("TRADE_SETTLED", "acme"),
        ("PAYMENT_REQUIRED", "other"),
        ("TRADE_CANCELLED", "other"), ("TRADE_CANCELLED", "acme"),
        ("ORDER_FILLED", "acme"),  # the IOC match empties the SELL order
        ("TRADE_MATCHED", "other"), ("TRADE_MATCHED", "acme"),
        ("ORDER_CANCELLED", "other"),
        ("PAYMENT_REQUIRED", "other"),
        ("TRADE_CANCELLED", "other"), ("TRADE_CANCELLED", "acme"),
        ("REFUND_REQUIRED", "other"),
        ("ORDER_CANCELLED", "acme"),
        ("ORDER_REJECTED", "acme"),
    ]  # fmt: skip
    by_seller = next(
        n
        for n, o in zip(rows.notes, rows.owners, strict=True)
        if o == "acme" and n.HasField("trade")
    )
    assert by_seller.trade.seller_account_id == s.seller
    assert by_seller.trade.buyer_account_id == ""
    assert by_seller.trade.checkout_url == ""
    required = next(n for n in rows.notes if n.HasField("payment_required"))
    assert required.payment_required.amount_due.amount_minor == 202
    assert required.payment_required.checkout_url.endswith(s.trades["settled"])
    assert required.payment_required.order_id == s.orders["buy1"]


def test_a_sale_is_in_flight_until_the_purchase_and_the_settlement() -> None:
    """PointsSold without PointsBought: in flight for I1, a negative escrow step for I2."""
    s = scenario()
    rows = MarketRows()
    sold_at = next(i for i, e in enumerate(s.events) if e.WhichOneof("payload") == "points_sold")
    rows.apply(s.events[: sold_at + 1])
    assert rows.in_flight == {f"trade-{s.trades['settled']}": 20}
    assert rows.escrow == {f"trade-{s.trades['settled']}": (s.seller, -20)}
    rows.check_invariants()


def test_a_quantity_that_disagrees_with_the_event_stops_the_projection() -> None:
    """Paired assertion: the open quantity a match states must be the one computed."""
    s = scenario()
    rows = MarketRows()
    first_match = next(
        i for i, e in enumerate(s.events) if e.WhichOneof("payload") == "trade_matched"
    )
    rows.apply(s.events[:first_match])
    wrong = events_pb2.Event()
    wrong.CopyFrom(s.events[first_match])
    wrong.trade_matched.sell_open_quantity_points = 41
    with pytest.raises(AssertionError):
        rows.apply([wrong])
    assert rows.position == first_match  # Nothing of the refused batch was kept.
