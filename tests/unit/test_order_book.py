"""The order book: examples of each rule, and a property test against a reference model."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server import limits
from pointex.server.actors import book_snapshots
from pointex.server.domain import errors
from pointex.server.domain.market_commands import CancelOrder, PlaceOrder, ReturnTradeQuantity
from pointex.server.domain.market_events import (
    MarketConfigured,
    MarketEvent,
    OrderCancelled,
    OrderPlaced,
    OrderQuantityReturned,
    TradeMatched,
)
from pointex.server.domain.order_book import (
    BookOrder,
    OrderBook,
    decide,
    evolve,
    held_by_resting_sells,
)
from pointex.server.domain.values import (
    FeeSchedule,
    Market,
    OrderCancelReason,
    OrderSide,
    Span,
    TimeInForce,
)

MARKET = Market(
    "PTS-CNY", "CNY", FeeSchedule(0, 0), FeeSchedule(0, 0), Span(900_000), 10_000, 10**9, "sb", True
)
BUY, SELL = OrderSide.BUY, OrderSide.SELL
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC


def _book() -> OrderBook:
    return evolve(OrderBook(), MarketConfigured(MARKET))


def _found(book: OrderBook, order_id: str) -> BookOrder:
    """Return an order the book knows, resting or recently finished."""
    order = book.find(order_id)
    assert order is not None, order_id
    return order


def _place(  # noqa: PLR0917 - the order's terms, as in the request.
    book: OrderBook,
    order_id: str,
    account: str,
    side: OrderSide,
    quantity: int,
    price: int,
    tif: TimeInForce = GTC,
) -> list[MarketEvent]:
    events = decide(book, PlaceOrder(order_id, account, "PTS-CNY", side, quantity, price, tif, ""))
    for event in events:
        evolve(book, event)
    return events


def _trades(events: list[MarketEvent]) -> list[tuple[str, str, int, int]]:
    return [
        (e.buy_order_id, e.sell_order_id, e.quantity_points, e.price_minor)
        for e in events
        if isinstance(e, TradeMatched)
    ]


def test_a_buy_matches_the_best_ask_first_at_the_makers_price() -> None:
    """Two asks at 101 and 100: a BUY at 105 takes 100 first, then 101, each at its price."""
    book = _book()
    _place(book, "s1", "a", SELL, 5, 101)
    _place(book, "s2", "b", SELL, 5, 100)
    events = _place(book, "b1", "c", BUY, 8, 105)
    assert _trades(events) == [("b1", "s2", 5, 100), ("b1", "s1", 3, 101)]
    assert _found(book, "s1").open_quantity_points == 2
    assert not _found(book, "b1").resting


def test_within_a_price_the_oldest_order_matches_first() -> None:
    """Two bids at one price: a SELL fills the earlier one first."""
    book = _book()
    _place(book, "b1", "a", BUY, 3, 100)
    _place(book, "b2", "b", BUY, 3, 100)
    events = _place(book, "s1", "c", SELL, 4, 90)
    assert _trades(events) == [("b1", "s1", 3, 100), ("b2", "s1", 1, 100)]


def test_an_order_never_matches_its_own_account() -> None:
    """A SELL of account a passes over a's own bid, which keeps resting, and takes b's."""
    book = _book()
    _place(book, "b1", "a", BUY, 3, 100)
    _place(book, "b2", "b", BUY, 3, 99)
    events = _place(book, "s1", "a", SELL, 3, 90)
    assert _trades(events) == [("b2", "s1", 3, 99)]
    assert _found(book, "b1").resting


def test_an_ioc_remainder_is_cancelled_and_a_gtc_remainder_rests() -> None:
    """IOC for 5 against 2: 2 trade, 3 cancelled; GTC for 5 against nothing: rests."""
    book = _book()
    _place(book, "s1", "a", SELL, 2, 100)
    events = _place(book, "b1", "b", BUY, 5, 100, IOC)
    assert isinstance(events[-1], OrderCancelled)
    assert events[-1].reason is OrderCancelReason.IOC_REMAINDER
    assert events[-1].cancelled_quantity_points == 3
    assert not _found(book, "b1").resting
    _place(book, "b2", "b", BUY, 5, 100)
    assert _found(book, "b2").resting


def test_a_cancelled_trade_returns_quantity_only_to_a_resting_order() -> None:
    """A partly filled SELL still rests: the quantity returns; a filled one gets nothing."""
    book = _book()
    _place(book, "s1", "a", SELL, 5, 100)
    _place(book, "b1", "b", BUY, 2, 100)
    returned = decide(book, ReturnTradeQuantity("PTS-CNY", "b1.t1", "s1", 2))
    assert returned == [OrderQuantityReturned("s1", "PTS-CNY", "b1.t1", 2, 5)]
    evolve(book, returned[0])
    assert _found(book, "s1").open_quantity_points == 5
    _place(book, "b2", "c", BUY, 5, 100)
    assert not _found(book, "s1").resting
    assert decide(book, ReturnTradeQuantity("PTS-CNY", "b2.t1", "s1", 5)) == []


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (PlaceOrder("x", "a", "PTS-CNY", BUY, 0, 1, GTC, ""), errors.AMOUNT_NOT_POSITIVE),
        (PlaceOrder("x", "a", "PTS-CNY", BUY, 1, 0, GTC, ""), errors.PRICE_NOT_POSITIVE),
        (PlaceOrder("x", "a", "PTS-CNY", BUY, 1, 10_001, GTC, ""), errors.AMOUNT_TOO_LARGE),
        (CancelOrder("PTS-CNY", "nope"), errors.ORDER_NOT_FOUND),
    ],
)
def test_rejections_name_their_reason(command: PlaceOrder | CancelOrder, reason: str) -> None:
    """Each malformed order or unknown cancel is refused with its reason."""
    with pytest.raises(errors.DomainError) as refused:
        decide(_book(), command)
    assert refused.value.reason == reason


def test_market_not_found_closed_order_not_open_and_client_id_reused() -> None:
    """An unconfigured market, a closed one, a filled order, a reused client id."""
    with pytest.raises(errors.NotFound, match="no such market"):
        decide(OrderBook(), PlaceOrder("x", "a", "M", BUY, 1, 1, GTC, ""))
    closed = evolve(OrderBook(), MarketConfigured(MARKET.__class__(**{
        **{f: getattr(MARKET, f) for f in MARKET.__slots__}, "open": False})))  # fmt: skip
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(closed, PlaceOrder("x", "a", "PTS-CNY", BUY, 1, 1, GTC, ""))
    assert refused.value.reason == errors.MARKET_CLOSED
    book = _book()
    _place(book, "s1", "a", SELL, 1, 100)
    _place(book, "b1", "b", BUY, 1, 100)
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(book, CancelOrder("PTS-CNY", "s1"))
    assert refused.value.reason == errors.ORDER_NOT_OPEN
    decide_reused = PlaceOrder("c2", "a", "PTS-CNY", BUY, 1, 1, GTC, "mine")
    for event in decide(book, PlaceOrder("c1", "a", "PTS-CNY", BUY, 1, 1, GTC, "mine")):
        evolve(book, event)
    with pytest.raises(errors.AlreadyExists) as reused:
        decide(book, decide_reused)
    assert reused.value.reason == errors.CLIENT_ORDER_ID_REUSED


# --- The property: the book fills exactly as a plain reference model does -------------------


@dataclass
class _RefOrder:
    order_id: str
    account: str
    side: OrderSide
    price: int
    open: int
    seq: int


class _Reference:
    """The simplest correct price-time book: a list, sorted on every match."""

    def __init__(self) -> None:
        self.resting: list[_RefOrder] = []
        self.seq = 0

    def place(  # noqa: PLR0917 - the order's terms.
        self, order_id: str, account: str, side: OrderSide, qty: int, price: int, tif: TimeInForce
    ) -> list[tuple[str, str, int, int]]:
        self.seq += 1
        crossing = [
            o
            for o in self.resting
            if o.side is not side
            and o.account != account
            and (o.price <= price if side is BUY else o.price >= price)
        ]
        crossing.sort(key=lambda o: (o.price if side is BUY else -o.price, o.seq))
        fills = []
        for maker in crossing:
            if qty == 0:
                break
            take = min(qty, maker.open)
            qty -= take
            maker.open -= take
            pair = (order_id, maker.order_id) if side is BUY else (maker.order_id, order_id)
            fills.append((*pair, take, maker.price))
        self.resting = [o for o in self.resting if o.open > 0]
        if qty and tif is GTC:
            self.resting.append(_RefOrder(order_id, account, side, price, qty, self.seq))
        return fills

    def cancel(self, order_id: str) -> bool:
        before = len(self.resting)
        self.resting = [o for o in self.resting if o.order_id != order_id]
        return len(self.resting) < before


_ORDER = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 9),
    st.integers(95, 105),
    st.sampled_from([GTC, GTC, IOC]),
)
_STEP = st.one_of(_ORDER, st.integers(0, 40))  # an int: cancel the n-th order placed so far


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, max_size=60))
def test_fills_match_a_reference_price_time_book(
    steps: list[int | tuple[str, OrderSide, int, int, TimeInForce]],
) -> None:
    """Random orders and cancels: same fills, same resting orders, held equals resting SELLs."""
    book, reference = _book(), _Reference()
    placed: list[str] = []
    for step in steps:
        if isinstance(step, int):
            if not placed:
                continue
            order_id = placed[step % len(placed)]
            expected = reference.cancel(order_id)
            try:
                events = decide(book, CancelOrder("PTS-CNY", order_id))
            except errors.FailedPrecondition:
                assert not expected
                continue
            assert expected
            for event in events:
                evolve(book, event)
            continue
        assert isinstance(step, tuple)
        account, side, qty, price, tif = step
        order_id = f"o{len(placed)}"
        placed.append(order_id)
        fills = _trades(_place(book, order_id, account, side, qty, price, tif))
        assert fills == reference.place(order_id, account, side, qty, price, tif)
    resting = {o.order_id: o.open_quantity_points for o in book.orders.values() if o.resting}
    assert resting == {o.order_id: o.open for o in reference.resting}
    sells: dict[str, int] = {}
    for o in reference.resting:
        if o.side is SELL:
            sells[o.account] = sells.get(o.account, 0) + o.open
    assert held_by_resting_sells(book) == sells


def test_order_placed_precedes_its_matches() -> None:
    """The first event of a placement is its OrderPlaced, carrying the market's currency."""
    events = _place(_book(), "b1", "a", BUY, 1, 100)
    assert isinstance(events[0], OrderPlaced)
    assert events[0].currency == "CNY"


# --- Snapshots: a restored book is the book ------------------------------------------------


def _orders_of(book: OrderBook) -> dict[str, tuple[object, ...]]:
    return {
        o.order_id: (o.account_id, o.side, o.resting, o.open_quantity_points, o.limit_price_minor)
        for o in book.orders.values()
        if o.resting
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(_STEP, max_size=60), st.tuples(st.sampled_from([BUY, SELL]), st.integers(1, 99)))
def test_a_book_restored_from_its_snapshot_matches_as_the_original(
    steps: list[int | tuple[str, OrderSide, int, int, TimeInForce]],
    probe: tuple[OrderSide, int],
) -> None:
    """Random orders and cancels, snapshot, restore: same resting orders, same next fills."""
    book = _book()
    placed: list[str] = []
    for step in steps:
        if isinstance(step, int):
            if placed:
                with contextlib.suppress(errors.FailedPrecondition):
                    for event in decide(book, CancelOrder("PTS-CNY", placed[step % len(placed)])):
                        evolve(book, event)
            continue
        account, side, qty, price, tif = step
        placed.append(f"o{len(placed)}")
        _place(book, placed[-1], account, side, qty, price, tif)
    snapshot = book_snapshots.to_snapshot("market-PTS-CNY", book, 7, 70)
    assert snapshot is not None
    restored = book_snapshots.from_snapshot(snapshot)
    assert restored is not None
    copy, version, position = restored
    assert (version, position) == (7, 70)
    assert _orders_of(copy) == _orders_of(book)
    assert copy.client_order_ids == book.client_order_ids
    assert copy.resting_by_account == book.resting_by_account
    side, quantity = probe
    price = 200 if side is BUY else 1  # Crosses every resting order of the other side.
    taker = PlaceOrder("probe", "z", "PTS-CNY", side, quantity, price, IOC, "")
    assert decide(copy, taker) == decide(book, taker)


def test_finished_orders_leave_memory_past_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the last `finished_orders_max` finished orders stay, with their client order ids."""
    monkeypatch.setattr(limits, "finished_orders_max", 3)
    book = _book()
    for n in range(5):
        order = PlaceOrder(f"b{n}", "a", "PTS-CNY", BUY, 1, 100, TimeInForce.IOC, f"c{n}")
        for event in decide(book, order):
            evolve(book, event)
    assert list(book.finished) == ["b2", "b3", "b4"]
    assert book.find("b0") is None
    assert set(book.client_order_ids) == {("a", "c2"), ("a", "c3"), ("a", "c4")}
    cancel = CancelOrder("PTS-CNY", "b0")
    with pytest.raises(errors.NotFound):
        decide(book, cancel)
    with pytest.raises(errors.FailedPrecondition) as not_open:
        decide(book, CancelOrder("PTS-CNY", "b4"))
    assert not_open.value.reason == errors.ORDER_NOT_OPEN


def test_a_snapshot_holds_the_resting_and_the_recently_finished_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However many orders a market took, its snapshot is as large as its bounded memory."""
    monkeypatch.setattr(limits, "finished_orders_max", 3)
    book = _book()
    for n in range(50):
        order = PlaceOrder(f"b{n}", "a", "PTS-CNY", BUY, 1, 100, TimeInForce.IOC, "")
        for event in decide(book, order):
            evolve(book, event)
    _place(book, "rest", "a", BUY, 1, 90, TimeInForce.GTC)
    snapshot = book_snapshots.to_snapshot("market-PTS-CNY", book, 101, 101)
    assert snapshot is not None
    restored = book_snapshots.from_snapshot(snapshot)
    assert restored is not None
    assert list(restored[0].finished) == ["b47", "b48", "b49"]
    assert list(restored[0].orders) == ["rest"]
