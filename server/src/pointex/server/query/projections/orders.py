"""Projections of the market stream and of the escrow steps on accounts: markets and orders.

An order's quantities keep quantity = open + filled + cancelled and settled <= filled (see
common.proto's Order). Each change of a resting order also changes its book's price level
(`BatchState.put_order`). Held points that no resting order or pending trade accounts for
yet are escrow steps in flight (I2), keyed ``order-<id>``, ``match-<trade id>`` and
``trade-<id>``.
"""

from __future__ import annotations

import dataclasses

from pointex.server.domain import streams
from pointex.server.query import market_views
from pointex.server.query.projections import market_fees, notifications
from pointex.server.query.projections.state import BatchState, at_us, position_of
from pointex.server.query.readstore.market_rows import ORDER_PENDING, MarketRow, OrderRow
from pointex.server.query.readstore.port import InFlightRow
from pointex.v1 import common_pb2, errors_pb2, events_pb2


def _name(enum: object, value: int, prefix: str) -> str:
    """Return an enum value's name without its prefix."""
    name: str = enum.Name(value)  # type: ignore[attr-defined]
    return name.removeprefix(prefix)


def notify_order(batch: BatchState, event: events_pb2.Event, kind: str, row: OrderRow) -> None:
    """Tell the order's owner about it (ORDER_FILLED, ORDER_CANCELLED, ORDER_REJECTED)."""
    position = position_of(event)
    batch.notify(
        notifications.market(
            kind,
            account_id=row.account_id,
            owner_partner_id=row.owner_partner_id,
            position=position,
            index=batch.next_index(position),
            at_us=at_us(event),
            order=market_views.order_message(row),
        )
    )


def _rest_status(filled_points: int) -> str:
    """Return the status of a resting order with this much in live trades."""
    return "PARTIALLY_FILLED" if filled_points else "OPEN"


def market_configured(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.MarketConfigured
) -> None:
    """Record a market's latest configuration, and count it for its fee schedule's version."""
    market = p.market
    version = market_fees.version_after(batch.markets.get(market.market_id), market)
    batch.put_market(
        MarketRow(
            market_id=market.market_id,
            currency=market.currency,
            body=market.SerializeToString(deterministic=True),
            configured_position=position_of(event),
            updated_at_us=at_us(event),
            configurations=version.configurations,
            fee_schedule_version=version.schedule_version,
        )
    )


def held(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsHeld) -> None:
    """Create the SELL order, pending until OrderPlaced; its held points are in flight."""
    if _pending(batch, event, p, "SELL", p.amount_points):
        batch.add_escrow(
            InFlightRow("order-" + p.order_id, p.account_id, p.amount_points, position_of(event))
        )


def buy_reserved(batch: BatchState, event: events_pb2.Event, p: events_pb2.BuyReserved) -> None:
    """Create the BUY order, pending until OrderPlaced (no points move)."""
    _pending(batch, event, p, "BUY", p.quantity_points)


def _pending(
    batch: BatchState,
    event: events_pb2.Event,
    p: events_pb2.PointsHeld | events_pb2.BuyReserved,
    side: str,
    quantity_points: int,
) -> bool:
    """Create an order held on its account, PENDING; False if it was placed already."""
    if p.order_id in batch.orders:
        return False  # Placed already: the book accounts for it.
    owner = batch.account(p.account_id).owner_partner_id
    batch.put_order(
        OrderRow(
            order_id=p.order_id,
            market_id=p.market_id,
            account_id=p.account_id,
            owner_partner_id=owner,
            side=side,
            time_in_force=_name(common_pb2.TimeInForce, p.time_in_force, "TIME_IN_FORCE_"),
            status=ORDER_PENDING,
            quantity_points=quantity_points,
            limit_price_minor=p.limit_price_minor,
            # A market id ends with its currency ("PTS-CNY"); OrderPlaced states it again.
            currency=p.market_id.rsplit("-", 1)[-1],
            open_quantity_points=quantity_points,
            filled_quantity_points=0,
            settled_quantity_points=0,
            cancelled_quantity_points=0,
            client_order_id=p.client_order_id,
            cancel_reason="",
            reject_reason="",
            placed_position=position_of(event),
            placed_at_us=at_us(event),
            updated_at_us=at_us(event),
        )
    )
    return True


def placed(batch: BatchState, event: events_pb2.Event, p: events_pb2.OrderPlaced) -> None:
    """Put the order in the book, OPEN with its whole quantity."""
    pending = batch.orders.get(p.order_id)
    if pending is not None:
        assert pending.status == ORDER_PENDING, pending
        if pending.side == "SELL":
            batch.remove_escrow("order-" + p.order_id)
    owner = batch.account(p.account_id).owner_partner_id
    batch.put_order(
        OrderRow(
            order_id=p.order_id,
            market_id=p.market_id,
            account_id=p.account_id,
            owner_partner_id=owner,
            side=_name(common_pb2.OrderSide, p.side, "ORDER_SIDE_"),
            time_in_force=_name(common_pb2.TimeInForce, p.time_in_force, "TIME_IN_FORCE_"),
            status="OPEN",
            quantity_points=p.quantity_points,
            limit_price_minor=p.limit_price_minor,
            currency=p.currency,
            open_quantity_points=p.quantity_points,
            filled_quantity_points=0,
            settled_quantity_points=0,
            cancelled_quantity_points=0,
            client_order_id=p.client_order_id,
            cancel_reason="",
            reject_reason="",
            placed_position=position_of(event),
            placed_at_us=at_us(event),
            updated_at_us=at_us(event),
        )
    )


def rejected(batch: BatchState, event: events_pb2.Event, p: events_pb2.OrderRejected) -> None:
    """Refuse a held order: REJECTED, its whole quantity cancelled; the release follows."""
    old = batch.order(p.order_id)
    assert old.status == ORDER_PENDING, old
    assert old.quantity_points == p.quantity_points, (old, p)
    new = dataclasses.replace(
        old,
        status="REJECTED",
        open_quantity_points=0,
        cancelled_quantity_points=old.quantity_points,
        reject_reason=_name(errors_pb2.ErrorReason, p.reason, "ERROR_REASON_"),
        updated_at_us=at_us(event),
    )
    batch.put_order(new)
    notify_order(batch, event, "ORDER_REJECTED", new)


def matched(batch: BatchState, event: events_pb2.Event, p: events_pb2.TradeMatched) -> None:
    """Move the matched quantity of both orders from open to filled."""
    for order_id, open_after in (
        (p.buy_order_id, p.buy_open_quantity_points),
        (p.sell_order_id, p.sell_open_quantity_points),
    ):
        old = batch.order(order_id)
        assert old.resting, old
        open_points = old.open_quantity_points - p.quantity_points
        assert open_points == open_after, (old, p)
        filled = old.filled_quantity_points + p.quantity_points
        new = dataclasses.replace(
            old,
            status="FILLED" if open_points == 0 else _rest_status(filled),
            open_quantity_points=open_points,
            filled_quantity_points=filled,
            updated_at_us=at_us(event),
        )
        batch.put_order(new)
        if open_points == 0:
            notify_order(batch, event, "ORDER_FILLED", new)
    # Until its TradeCreated (same append, but a batch may end between them) the trade does
    # not yet account for the matched points.
    batch.add_escrow(
        InFlightRow(
            "match-" + p.trade_id, p.seller_account_id, p.quantity_points, position_of(event)
        )
    )


def cancelled(batch: BatchState, event: events_pb2.Event, p: events_pb2.OrderCancelled) -> None:
    """Take the order's remainder off the book; a SELL's points are released next."""
    old = batch.order(p.order_id)
    assert old.resting, old
    assert old.open_quantity_points == p.cancelled_quantity_points, (old, p)
    new = dataclasses.replace(
        old,
        status="CANCELLED",
        open_quantity_points=0,
        cancelled_quantity_points=old.cancelled_quantity_points + p.cancelled_quantity_points,
        cancel_reason=_name(common_pb2.OrderCancelReason, p.reason, "ORDER_CANCEL_REASON_"),
        updated_at_us=at_us(event),
    )
    batch.put_order(new)
    if new.side == "SELL":
        batch.add_escrow(
            InFlightRow(
                "order-" + p.order_id, p.account_id, p.cancelled_quantity_points, position_of(event)
            )
        )
    notify_order(batch, event, "ORDER_CANCELLED", new)


def quantity_returned(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.OrderQuantityReturned
) -> None:
    """Put a cancelled trade's quantity back into its still-resting SELL order."""
    old = batch.order(p.order_id)
    assert old.resting, old
    open_points = old.open_quantity_points + p.quantity_points
    assert open_points == p.open_quantity_points, (old, p)
    filled = old.filled_quantity_points - p.quantity_points
    assert filled >= old.settled_quantity_points, (old, p)
    batch.put_order(
        dataclasses.replace(
            old,
            status=_rest_status(filled),
            open_quantity_points=open_points,
            filled_quantity_points=filled,
            updated_at_us=at_us(event),
        )
    )
    batch.remove_escrow(streams.trade(p.trade_id))


def released(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsReleased) -> None:
    """End the escrow step a release completes; a cancelled trade's quantity is cancelled."""
    if not p.trade_id:
        batch.remove_escrow("order-" + p.order_id)
        return
    batch.remove_escrow(streams.trade(p.trade_id))
    old = batch.order(p.order_id)
    # The order no longer rests, so the trade's quantity leaves it for good.
    assert not old.resting, old
    filled = old.filled_quantity_points - p.amount_points
    assert filled >= old.settled_quantity_points, (old, p)
    batch.put_order(
        dataclasses.replace(
            old,
            filled_quantity_points=filled,
            cancelled_quantity_points=old.cancelled_quantity_points + p.amount_points,
            updated_at_us=at_us(event),
        )
    )


def sold(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsSold) -> None:
    """Count a delivery whose trade still pends as a negative escrow step until it settles."""
    batch.add_escrow(
        InFlightRow(streams.trade(p.trade_id), p.account_id, -p.amount_points, position_of(event))
    )
