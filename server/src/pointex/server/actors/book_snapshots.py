"""Order book snapshots: a cache of a market's book at a stream version.

A market's stream holds every order ever placed, so a server would replay all of it at
start. A snapshot holds the book instead: the market's configuration, its resting orders in
full with each price level's time order, and the last `finished_orders_max` finished orders
only as far as the book still needs them (their account and client order id). Its size is
bounded by the resting orders, however many orders the market has taken. Like account snapshots it
is only a cache: deleting it, or a snapshot of a schema this release does not know, costs a
replay and loses nothing.

Writing one costs time proportional to the book, so a market writes one only after at least
as many events as the book has orders: the cost per event stays constant as the book grows.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Final

from pointex.server import limits
from pointex.server.domain.market_fees import FeeVersion
from pointex.server.domain.order_book import BookOrder, OrderBook
from pointex.server.domain.values import FeeSchedule, Market, OrderSide, Span, TimeInForce
from pointex.server.eventstore.port import Snapshot

SNAPSHOT_TYPE: Final = "OrderBookSnapshot"
# Version 2 keeps finished orders apart, oldest first; version 3 adds the fee schedule's
# version (domain/market_fees.py). An older snapshot is not read: a replay of the stream
# rebuilds the book. A version-2 snapshot cannot tell how many configurations came before
# it, and no default can stand in for that count: the query side counts every one, so a
# guess would refuse its quotes, and go on counting from the wrong number.
SNAPSHOT_SCHEMA_VERSION: Final = 3


def worth_writing(book: OrderBook, events_since_last: int) -> bool:
    """Tell whether enough events passed since the last snapshot to pay for a new one."""
    known = len(book.orders) + len(book.finished)
    return events_since_last >= max(limits.snapshot_interval_events, known)


def to_snapshot(stream_id: str, book: OrderBook, version: int, position: int) -> Snapshot | None:
    """Return the snapshot of `book` as of stream `version`, or None if it would be too large."""
    data = {
        "market": _market_to_json(book.market),
        "fee_version": [book.fee_version.configurations, book.fee_version.schedule_version],
        "orders": [_order_to_json(order) for order in book.orders.values()],
        "finished": [_order_to_json(order) for order in book.finished.values()],
        "bids": [[price, list(ids)] for price, ids in sorted(book.bids.levels.items())],
        "asks": [[price, list(ids)] for price, ids in sorted(book.asks.levels.items())],
        "position": position,
    }
    encoded = json.dumps(data, separators=(",", ":")).encode()
    if len(encoded) > limits.snapshot_data_bytes_max:
        return None  # Too large to be a cheap cache: the stream is replayed instead.
    return Snapshot(stream_id, version, SNAPSHOT_TYPE, SNAPSHOT_SCHEMA_VERSION, encoded)


def from_snapshot(snapshot: Snapshot) -> tuple[OrderBook, int, int] | None:
    """Return (book, version, position) from a snapshot, or None if it cannot be used."""
    if snapshot.type != SNAPSHOT_TYPE or snapshot.schema_version != SNAPSHOT_SCHEMA_VERSION:
        return None
    data = json.loads(snapshot.data)
    configurations, schedule_version = data["fee_version"]
    book = OrderBook(
        market=_market_from_json(data["market"]),
        fee_version=FeeVersion(configurations, schedule_version),
    )
    for fields in (*data["orders"], *data["finished"]):
        order = _order_from_json(fields)
        if order.client_order_id:
            book.client_order_ids[(order.account_id, order.client_order_id)] = order.order_id
        if order.done:
            book.finish(order)
        else:
            book.orders[order.order_id] = order
            book.resting_by_account[order.account_id] += 1
    for side, levels in ((book.bids, data["bids"]), (book.asks, data["asks"])):
        for price, order_ids in levels:
            side.levels[price] = collections.deque(order_ids)
            side.prices.append(price)
    _check(book)
    return book, snapshot.stream_version, int(data["position"])


def _check(book: OrderBook) -> None:
    """Assert that the levels hold exactly the resting orders, each at its price and side."""
    placed = 0
    for side, book_side in ((OrderSide.BUY, book.bids), (OrderSide.SELL, book.asks)):
        assert book_side.prices == sorted(book_side.prices), book_side.prices
        for price, order_ids in book_side.levels.items():
            for order_id in order_ids:
                order = book.orders[order_id]
                assert order.resting, order
                assert (order.side, order.limit_price_minor) == (side, price), order
                assert order.open_quantity_points > 0, order
                placed += 1
    assert placed == sum(book.resting_by_account.values()), placed


def _order_to_json(order: BookOrder) -> list[Any]:
    if order.done:  # Kept for ORDER_NOT_OPEN and client order ids, nothing else.
        return [order.order_id, order.account_id, order.side.value, order.client_order_id]
    return [
        order.order_id,
        order.account_id,
        order.side.value,
        order.client_order_id,
        order.limit_price_minor,
        order.quantity_points,
        order.time_in_force.value,
        order.open_quantity_points,
        order.cancelled_quantity_points,
    ]


def _order_from_json(fields: list[Any]) -> BookOrder:
    order_id, account_id, side, client_order_id = fields[:4]
    if len(fields) == 4:  # noqa: PLR2004 - a finished order: the four fields above.
        return BookOrder(
            order_id, account_id, OrderSide(side), 0, 0, TimeInForce.GTC, client_order_id, 0,
            resting=False, done=True,
        )  # fmt: skip
    price, quantity, tif, open_points, cancelled = fields[4:]
    return BookOrder(
        order_id,
        account_id,
        OrderSide(side),
        price,
        quantity,
        TimeInForce(tif),
        client_order_id,
        open_points,
        cancelled,
    )


def _market_to_json(market: Market | None) -> dict[str, Any] | None:
    if market is None:
        return None
    return {
        "market_id": market.market_id,
        "currency": market.currency,
        "buyer_fee": [market.buyer_fee.rate_bps, market.buyer_fee.fixed_minor],
        "seller_fee": [market.seller_fee.rate_bps, market.seller_fee.fixed_minor],
        "payment_window_ms": market.payment_window.ms,
        "max_price_minor": market.max_price_minor,
        "max_quantity_points": market.max_quantity_points,
        "provider_id": market.provider_id,
        "open": market.open,
    }


def _market_from_json(data: dict[str, Any] | None) -> Market | None:
    if data is None:
        return None
    return Market(
        market_id=data["market_id"],
        currency=data["currency"],
        buyer_fee=FeeSchedule(*data["buyer_fee"]),
        seller_fee=FeeSchedule(*data["seller_fee"]),
        payment_window=Span(data["payment_window_ms"]),
        max_price_minor=data["max_price_minor"],
        max_quantity_points=data["max_quantity_points"],
        provider_id=data["provider_id"],
        open=data["open"],
    )
