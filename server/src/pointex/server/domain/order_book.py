"""The market aggregate: a price-time order book. `decide` and `evolve`, both pure of I/O.

`decide(book, command)` reads the book and returns the events (or raises a DomainError);
it never changes the book. `evolve(book, event)` applies one committed event and returns
the book. Unlike an account, a book is updated in place (copying it for every order
would cost O(book) per event); the market actor reloads it when a unit fails to commit.

Matching: an incoming order meets the opposite side best price first and, within a
price, oldest first; it trades at the resting order's price; it never matches an order of
the same account (those are passed over and keep their place). What is left of a GTC
order rests; what is left of an IOC order is cancelled at once.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from pointex.server import limits
from pointex.server.domain import errors, market_fees
from pointex.server.domain.market_commands import (
    CancelOrder,
    ConfigureMarket,
    MarketCommand,
    PlaceOrder,
    RejectOrder,
    ReturnTradeQuantity,
)
from pointex.server.domain.market_events import (
    MarketConfigured,
    MarketEvent,
    OrderCancelled,
    OrderPlaced,
    OrderQuantityReturned,
    OrderRejected,
    TradeMatched,
)
from pointex.server.domain.values import Market, OrderCancelReason, OrderSide, TimeInForce

INT64_MAX = 2**63 - 1


@dataclass(slots=True)
class BookOrder:
    """An order the market knows, resting or not."""

    order_id: str
    account_id: str
    side: OrderSide
    limit_price_minor: int
    quantity_points: int
    time_in_force: TimeInForce
    client_order_id: str
    open_quantity_points: int
    cancelled_quantity_points: int = 0  # left the book unmatched (cancel, IOC, rejection)
    resting: bool = True
    done: bool = False  # left the book (filled, cancelled or rejected): never rests again


@dataclass(slots=True)
class _Side:
    """One side of the book: price levels, each a queue of order ids in time order."""

    levels: dict[int, collections.deque[str]] = field(default_factory=dict)
    prices: list[int] = field(default_factory=list)  # ascending

    def add(self, price: int, order_id: str) -> None:
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = collections.deque()
            bisect.insort(self.prices, price)
        level.append(order_id)

    def remove(self, price: int, order_id: str) -> None:
        level = self.levels[price]
        level.remove(order_id)
        if not level:
            del self.levels[price]
            self.prices.pop(bisect.bisect_left(self.prices, price))


@dataclass(slots=True)
class OrderBook:
    """A market: its configuration, its resting orders by side, and the recently finished.

    Memory is bounded: `orders` holds the resting orders (at most
    `open_orders_per_account_max` per account), `finished` the last `finished_orders_max`
    orders that left the book, oldest first; older ones are forgotten, with their client
    order ids.
    """

    market: Market | None = None
    orders: dict[str, BookOrder] = field(default_factory=dict)  # Resting.
    finished: collections.OrderedDict[str, BookOrder] = field(
        default_factory=collections.OrderedDict
    )
    client_order_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    bids: _Side = field(default_factory=_Side)
    asks: _Side = field(default_factory=_Side)
    resting_by_account: collections.Counter[str] = field(default_factory=collections.Counter)
    # The configurations recorded so far and the fee schedule's version (domain/market_fees.py).
    fee_version: market_fees.FeeVersion = market_fees.NOT_CONFIGURED

    def find(self, order_id: str) -> BookOrder | None:
        """Return a resting or recently finished order, or None (new, or long finished)."""
        return self.orders.get(order_id) or self.finished.get(order_id)

    def finish(self, order: BookOrder) -> None:
        """Move an order that left the book to `finished`, forgetting the oldest past the bound."""
        assert order.done, order
        self.orders.pop(order.order_id, None)
        self.finished[order.order_id] = order
        while len(self.finished) > limits.finished_orders_max:
            _, oldest = self.finished.popitem(last=False)
            if oldest.client_order_id:
                self.client_order_ids.pop((oldest.account_id, oldest.client_order_id), None)

    def side(self, side: OrderSide) -> _Side:
        """Return the resting orders of `side`."""
        return self.bids if side is OrderSide.BUY else self.asks

    def best_first(self, side: OrderSide) -> Iterator[BookOrder]:
        """Yield the resting orders of `side` in matching priority: best price, then oldest."""
        book_side = self.side(side)
        prices = book_side.prices if side is OrderSide.SELL else reversed(book_side.prices)
        for price in list(prices):
            for order_id in book_side.levels[price]:
                yield self.orders[order_id]


def trade_id_for(order_id: str, match_number: int) -> str:
    """Return the id of the `match_number`-th trade (from 1) an incoming order created."""
    return f"{order_id}.t{match_number}"


def _require_market(book: OrderBook, market_id: str) -> Market:
    if book.market is None:
        raise errors.NotFound(errors.MARKET_NOT_FOUND, "no such market", market_id=market_id)
    return book.market


def check_order(book: OrderBook, command: PlaceOrder) -> Market:
    """Raise the DomainError an order would meet before matching, else return the market.

    An order asks this before its account holds it (a SELL's points, a BUY's quantity), so
    that an order the market would refuse holds nothing; placement checks again, and what it
    refuses then is rejected and released. A fee quote is checked both times: the schedule
    may change in between only when another configuration is recorded (a restart with
    other fees, before recovery places a held order).
    """
    market = _require_market(book, command.market_id)
    if command.quantity_points <= 0:
        raise errors.InvalidArgument(
            errors.AMOUNT_NOT_POSITIVE, "quantity must be positive", field="quantity_points"
        )
    if command.limit_price_minor <= 0:
        raise errors.InvalidArgument(
            errors.PRICE_NOT_POSITIVE, "price must be positive", field="limit_price_minor"
        )
    if not market.open:
        raise errors.FailedPrecondition(
            errors.MARKET_CLOSED, "the market accepts no orders", market_id=market.market_id
        )
    check_bounds(market, command.quantity_points, command.limit_price_minor)
    market_fees.require_quote(
        market,
        book.fee_version,
        command.side,
        command.quantity_points,
        command.limit_price_minor,
        command.fee_quote,
    )
    _require_new_client_order_id(book, command)
    if book.resting_by_account[command.account_id] >= limits.open_orders_per_account_max:
        raise errors.FailedPrecondition(
            errors.TOO_MANY_OPEN_ORDERS,
            "the account has the most resting orders allowed",
            account_id=command.account_id,
            limit=str(limits.open_orders_per_account_max),
        )
    return market


def check_bounds(market: Market, quantity_points: int, limit_price_minor: int) -> None:
    """Raise the InvalidArgument of positive terms beyond the market's bounds, or its int64."""
    if quantity_points > market.max_quantity_points:
        raise errors.InvalidArgument(
            errors.AMOUNT_TOO_LARGE,
            f"quantity exceeds the market's {market.max_quantity_points}",
            field="quantity_points",
            limit=str(market.max_quantity_points),
        )
    if limit_price_minor > market.max_price_minor:
        raise errors.InvalidArgument(
            errors.AMOUNT_TOO_LARGE,
            f"price exceeds the market's {market.max_price_minor}",
            field="limit_price_minor",
            limit=str(market.max_price_minor),
        )
    _require_notional_fits(market, quantity_points * limit_price_minor)


def _require_notional_fits(market: Market, notional_minor: int) -> None:
    worst = notional_minor + market.buyer_fee.fee_minor(notional_minor)
    if worst > INT64_MAX:
        raise errors.InvalidArgument(
            errors.NOTIONAL_OVERFLOW,
            "quantity x price plus fees does not fit in 64 bits",
            field="limit_price_minor",
        )


def _require_new_client_order_id(book: OrderBook, command: PlaceOrder) -> None:
    if not command.client_order_id:
        return
    existing = book.client_order_ids.get((command.account_id, command.client_order_id))
    if existing is not None and existing != command.order_id:
        raise errors.AlreadyExists(
            errors.CLIENT_ORDER_ID_REUSED,
            "the account already used this client_order_id",
            field="client_order_id",
            order_id=existing,
        )


def _place(book: OrderBook, command: PlaceOrder) -> list[MarketEvent]:
    assert book.find(command.order_id) is None, command.order_id
    market = check_order(book, command)
    events: list[MarketEvent] = [
        OrderPlaced(
            command.order_id,
            market.market_id,
            command.account_id,
            command.side,
            command.quantity_points,
            command.limit_price_minor,
            market.currency,
            command.time_in_force,
            command.client_order_id,
        )
    ]
    remaining = command.quantity_points
    for maker in book.best_first(command.side.opposite):
        if remaining == 0 or not _crosses(command, maker.limit_price_minor):
            break
        if len(events) > limits.trades_per_order_max:
            break  # One placement's append stays bounded; the remainder rests or is cancelled.
        if maker.account_id == command.account_id:
            continue  # Never a self-match: the resting order keeps its place.
        quantity = min(remaining, maker.open_quantity_points)
        remaining -= quantity
        events.append(_match(command, maker, quantity, remaining, len(events)))
    if remaining and command.time_in_force is TimeInForce.IOC:
        events.append(
            OrderCancelled(
                command.order_id,
                market.market_id,
                command.account_id,
                command.side,
                OrderCancelReason.IOC_REMAINDER,
                remaining,
            )
        )
    return events


def _crosses(command: PlaceOrder, maker_price: int) -> bool:
    if command.side is OrderSide.BUY:
        return maker_price <= command.limit_price_minor
    return maker_price >= command.limit_price_minor


def _match(
    taker: PlaceOrder, maker: BookOrder, quantity: int, taker_left: int, number: int
) -> TradeMatched:
    maker_left = maker.open_quantity_points - quantity
    buy, sell = (taker, maker) if taker.side is OrderSide.BUY else (maker, taker)
    buy_left, sell_left = (taker_left, maker_left) if buy is taker else (maker_left, taker_left)
    return TradeMatched(
        trade_id_for(taker.order_id, number),
        taker.market_id,
        buy.order_id,
        sell.order_id,
        buy.account_id,
        sell.account_id,
        maker.side,
        quantity,
        maker.limit_price_minor,
        buy_left,
        sell_left,
    )


def _reject(book: OrderBook, command: RejectOrder) -> list[MarketEvent]:
    order = command.order
    assert book.find(order.order_id) is None, order.order_id
    return [
        OrderRejected(
            order.order_id,
            order.market_id,
            order.account_id,
            order.side,
            order.quantity_points,
            command.reason,
        )
    ]


def _configure(book: OrderBook, command: ConfigureMarket) -> list[MarketEvent]:
    if book.market == command.market:
        return []
    return [MarketConfigured(command.market)]


def _cancel(book: OrderBook, command: CancelOrder) -> list[MarketEvent]:
    market = _require_market(book, command.market_id)
    order = book.find(command.order_id)
    if order is None:
        raise errors.NotFound(errors.ORDER_NOT_FOUND, "no such order", order_id=command.order_id)
    if not order.resting:
        raise errors.FailedPrecondition(
            errors.ORDER_NOT_OPEN, "the order no longer rests", order_id=command.order_id
        )
    return [
        OrderCancelled(
            order.order_id,
            market.market_id,
            order.account_id,
            order.side,
            OrderCancelReason.REQUESTED,
            order.open_quantity_points,
        )
    ]


def _return_quantity(book: OrderBook, command: ReturnTradeQuantity) -> list[MarketEvent]:
    """Give a cancelled trade's quantity back to its SELL order, if that order still rests.

    No event means it does not rest (and never will again): the seller gets the points.
    """
    order = book.orders.get(command.sell_order_id)
    if order is None or not order.resting:
        return []
    return [
        OrderQuantityReturned(
            order.order_id,
            command.market_id,
            command.trade_id,
            command.quantity_points,
            order.open_quantity_points + command.quantity_points,
        )
    ]


def decide(book: OrderBook, command: MarketCommand) -> list[MarketEvent]:
    """Return the events `command` produces on `book`, or raise the DomainError refusing it."""
    match command:
        case PlaceOrder():
            return _place(book, command)
        case CancelOrder():
            return _cancel(book, command)
        case ReturnTradeQuantity():
            return _return_quantity(book, command)
        case ConfigureMarket():
            return _configure(book, command)
        case RejectOrder():
            return _reject(book, command)


def evolve(book: OrderBook, event: MarketEvent) -> OrderBook:
    """Apply one committed event to `book` (in place) and return it."""
    match event:
        case MarketConfigured(market=market):
            before = None if book.market is None else market_fees.fees_of(book.market)
            fees = market_fees.fees_of(market)
            book.fee_version = market_fees.configured(book.fee_version, before, fees)
            book.market = market
        case OrderPlaced():
            _evolve_placed(book, event)
        case OrderRejected():
            book.finish(
                BookOrder(
                    event.order_id, event.account_id, event.side, 0, event.quantity_points,
                    TimeInForce.GTC, "", 0, event.quantity_points, resting=False, done=True,
                )
            )  # fmt: skip
        case TradeMatched():
            _fill(book, event.buy_order_id, event.buy_open_quantity_points)
            _fill(book, event.sell_order_id, event.sell_open_quantity_points)
        case OrderCancelled():
            order = book.orders[event.order_id]
            assert order.open_quantity_points == event.cancelled_quantity_points, event
            order.cancelled_quantity_points += event.cancelled_quantity_points
            _leave_book(book, order)
        case OrderQuantityReturned():
            order = book.orders[event.order_id]
            assert order.resting, event
            order.open_quantity_points = event.open_quantity_points
    return book


def _evolve_placed(book: OrderBook, event: OrderPlaced) -> None:
    order = BookOrder(
        event.order_id,
        event.account_id,
        event.side,
        event.limit_price_minor,
        event.quantity_points,
        event.time_in_force,
        event.client_order_id,
        event.quantity_points,
    )
    book.orders[order.order_id] = order
    if order.client_order_id:
        book.client_order_ids[(order.account_id, order.client_order_id)] = order.order_id
    book.side(order.side).add(order.limit_price_minor, order.order_id)
    book.resting_by_account[order.account_id] += 1


def _fill(book: OrderBook, order_id: str, open_after: int) -> None:
    order = book.orders[order_id]
    assert 0 <= open_after < order.open_quantity_points, (order, open_after)
    order.open_quantity_points = open_after
    if open_after == 0:
        _leave_book(book, order)


def _leave_book(book: OrderBook, order: BookOrder) -> None:
    assert order.resting, order
    book.side(order.side).remove(order.limit_price_minor, order.order_id)
    order.open_quantity_points = 0
    order.resting = False
    order.done = True
    book.finish(order)
    book.resting_by_account[order.account_id] -= 1
    if not book.resting_by_account[order.account_id]:
        del book.resting_by_account[order.account_id]


def held_by_resting_sells(book: OrderBook) -> dict[str, int]:
    """Return, per account, the open quantity of its resting SELL orders (for I2)."""
    held: collections.Counter[str] = collections.Counter()
    for order in book.best_first(OrderSide.SELL):
        held[order.account_id] += order.open_quantity_points
    return dict(held)


def copy_order(order: BookOrder) -> BookOrder:
    """Return a detached copy of an order (a reply must not see later changes)."""
    return dataclasses.replace(order)
