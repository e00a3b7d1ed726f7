"""Projections of the trade streams: a trade's payment process, and what it does to orders.

A trade is created PENDING_PAYMENT and becomes SETTLED or CANCELLED once; a settled trade
may then be refunded within the cooling-off window (REFUNDING, then REFUNDED or SETTLED
again), which `refunds` projects. Settling adds its quantity to both orders' settled
quantity; cancelling moves it from the BUY order's filled to its cancelled quantity at once,
and from the SELL order's filled quantity when the next step says where it goes
(OrderQuantityReturned: back to the book; PointsReleased: cancelled).
"""

from __future__ import annotations

import dataclasses

from pointex.server.domain import streams
from pointex.server.query import market_views
from pointex.server.query.projections import notifications
from pointex.server.query.projections.state import BatchState, at_us, position_of
from pointex.server.query.readstore.market_rows import TradeRow
from pointex.server.query.readstore.port import InFlightRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2


def _notify(
    batch: BatchState, event: events_pb2.Event, kind: str, row: TradeRow, *, seller: bool = True
) -> None:
    """Tell the buyer's owner (and the seller's, with `seller`) about a trade, as each sees it."""
    sides = [(row.buyer_account_id, row.buyer_owner_partner_id)]
    if seller:
        sides.append((row.seller_account_id, row.seller_owner_partner_id))
    position = position_of(event)
    for account_id, owner in sides:
        batch.notify(
            notifications.market(
                kind,
                account_id=account_id,
                owner_partner_id=owner,
                position=position,
                index=batch.next_index(position),
                at_us=at_us(event),
                trade=market_views.trade_message(row, owner),
            )
        )


def created(batch: BatchState, event: events_pb2.Event, p: events_pb2.TradeCreated) -> None:
    """Create the trade, PENDING_PAYMENT, and tell both sides."""
    assert p.trade_id not in batch.trades, p.trade_id
    assert p.notional_minor == p.quantity_points * p.price_minor, p
    assert p.amount_due_minor == p.notional_minor + p.buyer_fee_minor, p
    assert p.seller_proceeds_minor == p.notional_minor - p.seller_fee_minor, p
    row = TradeRow(
        trade_id=p.trade_id,
        market_id=p.market_id,
        status="PENDING_PAYMENT",
        buy_order_id=p.buy_order_id,
        sell_order_id=p.sell_order_id,
        buyer_account_id=p.buyer_account_id,
        seller_account_id=p.seller_account_id,
        buyer_owner_partner_id=batch.account(p.buyer_account_id).owner_partner_id,
        seller_owner_partner_id=batch.account(p.seller_account_id).owner_partner_id,
        maker_side=common_pb2.OrderSide.Name(p.maker_side).removeprefix("ORDER_SIDE_"),
        quantity_points=p.quantity_points,
        price_minor=p.price_minor,
        currency=p.currency,
        notional_minor=p.notional_minor,
        buyer_fee_minor=p.buyer_fee_minor,
        seller_fee_minor=p.seller_fee_minor,
        amount_due_minor=p.amount_due_minor,
        seller_proceeds_minor=p.seller_proceeds_minor,
        payment_deadline_us=int(p.payment_deadline.ToMicroseconds()),
        provider_id="",
        payment_id="",
        checkout_url="",
        cancel_reason="",
        refund_required=False,
        matched_position=position_of(event),
        matched_at_us=at_us(event),
        settled_at_us=0,
        cancelled_at_us=0,
        updated_at_us=at_us(event),
    )
    batch.put_trade(row)
    batch.remove_escrow("match-" + row.trade_id)
    _notify(batch, event, "TRADE_MATCHED", row)


def payment_requested(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.PaymentRequested
) -> None:
    """Record the payment and tell the buyer where and how much to pay."""
    row = dataclasses.replace(
        batch.trade(p.trade_id),
        provider_id=p.provider_id,
        payment_id=p.payment_id,
        checkout_url=p.checkout_url,
        updated_at_us=at_us(event),
    )
    batch.put_trade(row)
    position = position_of(event)
    details = query_service_pb2.PaymentRequiredDetails(
        trade_id=row.trade_id,
        order_id=row.buy_order_id,
        market_id=row.market_id,
        quantity_points=row.quantity_points,
        amount_due=common_pb2.Money(amount_minor=row.amount_due_minor, currency=row.currency),
        checkout_url=row.checkout_url,
        provider_id=row.provider_id,
        payment_id=row.payment_id,
        payment_deadline=market_views.trade_message(row, None).payment_deadline,
    )
    batch.notify(
        notifications.market(
            "PAYMENT_REQUIRED",
            account_id=row.buyer_account_id,
            owner_partner_id=row.buyer_owner_partner_id,
            position=position,
            index=batch.next_index(position),
            at_us=at_us(event),
            payment_required=details,
        )
    )


def payment_confirmed(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.PaymentConfirmed
) -> None:
    """Record a confirmation; settlement (or, when late, RefundRequired) follows."""
    old = batch.trade(p.trade_id)
    batch.put_trade(
        dataclasses.replace(
            old,
            provider_id=old.provider_id or p.provider_id,
            payment_id=old.payment_id or p.payment_id,
            updated_at_us=at_us(event),
        )
    )


def payment_failed(batch: BatchState, event: events_pb2.Event, p: events_pb2.PaymentFailed) -> None:
    """Record a failure; TradeCancelled follows."""
    old = batch.trade(p.trade_id)
    assert old.status == "PENDING_PAYMENT", old
    batch.put_trade(dataclasses.replace(old, updated_at_us=at_us(event)))


def settled(batch: BatchState, event: events_pb2.Event, p: events_pb2.TradeSettled) -> None:
    """Settle the trade: both orders' settled quantity grows; the sale's escrow step ends."""
    old = batch.trade(p.trade_id)
    assert old.status == "PENDING_PAYMENT", old
    assert p.seller_proceeds.amount_minor == old.seller_proceeds_minor, (old, p)
    row = dataclasses.replace(
        old, status="SETTLED", settled_at_us=at_us(event), updated_at_us=at_us(event)
    )
    batch.put_trade(row)
    for order_id in (row.buy_order_id, row.sell_order_id):
        order = batch.order(order_id)
        settled_points = order.settled_quantity_points + row.quantity_points
        assert settled_points <= order.filled_quantity_points, (order, row)
        batch.put_order(
            dataclasses.replace(
                order, settled_quantity_points=settled_points, updated_at_us=at_us(event)
            )
        )
    batch.remove_escrow(streams.trade(row.trade_id))
    _notify(batch, event, "TRADE_SETTLED", row)


def cancelled(batch: BatchState, event: events_pb2.Event, p: events_pb2.TradeCancelled) -> None:
    """Cancel the trade: the BUY order's quantity is cancelled; the seller's waits for its step."""
    old = batch.trade(p.trade_id)
    assert old.status == "PENDING_PAYMENT", old
    row = dataclasses.replace(
        old,
        status="CANCELLED",
        cancel_reason=common_pb2.TradeCancelReason.Name(p.reason).removeprefix(
            "TRADE_CANCEL_REASON_"
        ),
        cancelled_at_us=at_us(event),
        updated_at_us=at_us(event),
    )
    batch.put_trade(row)
    buy = batch.order(row.buy_order_id)
    filled = buy.filled_quantity_points - row.quantity_points
    assert filled >= buy.settled_quantity_points, (buy, row)
    status = buy.status
    if buy.resting:
        status = "PARTIALLY_FILLED" if filled else "OPEN"
    batch.put_order(
        dataclasses.replace(
            buy,
            status=status,
            filled_quantity_points=filled,
            cancelled_quantity_points=buy.cancelled_quantity_points + row.quantity_points,
            updated_at_us=at_us(event),
        )
    )
    batch.add_escrow(
        InFlightRow(
            streams.trade(row.trade_id),
            row.seller_account_id,
            row.quantity_points,
            position_of(event),
        )
    )
    _notify(batch, event, "TRADE_CANCELLED", row)


def refund_required(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.RefundRequired
) -> None:
    """Flag a cancelled trade whose payment was confirmed late, and tell the buyer."""
    old = batch.trade(p.trade_id)
    row = dataclasses.replace(old, refund_required=True, updated_at_us=at_us(event))
    batch.put_trade(row)
    _notify(batch, event, "REFUND_REQUIRED", row, seller=False)
