"""Cooling-off refunds in the projections: a settled purchase given back, or kept.

A buyer may have a settled trade refunded within the program's cooling-off window. The trade
stream says where the refund stands (RefundRequested: REFUNDING; TradeRefunded: REFUNDED;
RefundDeclined: SETTLED again); each of those events is committed just before the account
event that moves the points:

- `BoughtPointsReturned` (with RefundRequested): the trade's quantity leaves the buyer's
  available points. It is then in flight back to the seller, under a key of its own
  (`trade-<id>/refund`), as a transfer's points are between debit and credit: I1 counts it
  once, wherever a batch ends. The settlement's own key (`trade-<id>`) is not reused, so a
  sale delivered and a refund returned never share a row.
- `SoldPointsReturned` (with TradeRefunded): the points arrive in the seller's available
  points; the in-flight entry ends.
- `BoughtPointsRestored` (with RefundDeclined): the points come back to the buyer; the
  in-flight entry ends.

Refunds move available points only, never held ones, and a settled trade is no longer
pending payment, so I2 (held = resting SELL quantity + quantity pending payment as seller +
escrow steps) is untouched. The orders keep the trade as filled and settled: the match
happened, and the refund is a step of the trade after it.

Each account event is checked against the trade (its side, its quantity, the status its trade
event has just set) and against the points in flight it settles (paired assertions), so the
batch is given those rows (`in_flight_ids_of`, loaded through `keys_of`). The buyer's refund
may be asked again after a decline (another refund id): the key is then added again, after
its removal, within one batch or across batches.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from pointex.server.domain import streams
from pointex.server.query import market_views
from pointex.server.query.projections import notifications
from pointex.server.query.projections.state import (
    BatchState,
    Move,
    apply_move,
    at_us,
    position_of,
)
from pointex.server.query.readstore.market_rows import TradeRow
from pointex.server.query.readstore.port import InFlightRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2

_REFUND_SUFFIX: Final = "/refund"


def refund_in_flight(trade_id: str) -> str:
    """Return the key of a refund's points in flight: `trade-<id>/refund`."""
    return streams.trade(trade_id) + _REFUND_SUFFIX


def in_flight_ids_of(payload: object) -> tuple[str, ...]:
    """Return the refund points in flight an event settles and is checked against, or ()."""
    if isinstance(payload, events_pb2.SoldPointsReturned | events_pb2.BoughtPointsRestored):
        return (refund_in_flight(payload.trade_id),)
    return ()


# --- The trade stream: the refund's status ----------------------------------------------------


def requested(batch: BatchState, event: events_pb2.Event, p: events_pb2.RefundRequested) -> None:
    """A settled trade is being refunded: REFUNDING; tell both sides."""
    old = batch.trade(p.trade_id)
    assert old.status == "SETTLED", old
    assert p.refund_id, p
    # The buyer gets back all it paid: the amount due, in the trade's currency.
    assert (p.amount.amount_minor, p.amount.currency) == (old.amount_due_minor, old.currency), p
    row = dataclasses.replace(old, status="REFUNDING", updated_at_us=at_us(event))
    batch.put_trade(row)
    _notify(batch, event, "TRADE_REFUNDING", row, refund_id=p.refund_id)


def refunded(batch: BatchState, event: events_pb2.Event, p: events_pb2.TradeRefunded) -> None:
    """The provider gave the payment back: REFUNDED; tell both sides."""
    old = batch.trade(p.trade_id)
    assert old.status == "REFUNDING", old
    row = dataclasses.replace(old, status="REFUNDED", updated_at_us=at_us(event))
    batch.put_trade(row)
    _notify(
        batch,
        event,
        "TRADE_REFUNDED",
        row,
        refund_id=p.refund_id,
        provider_refund_id=p.provider_refund_id,
    )


def declined(batch: BatchState, event: events_pb2.Event, p: events_pb2.RefundDeclined) -> None:
    """The provider refused the refund: SETTLED again; tell both sides why."""
    old = batch.trade(p.trade_id)
    assert old.status == "REFUNDING", old
    row = dataclasses.replace(old, status="SETTLED", updated_at_us=at_us(event))
    batch.put_trade(row)
    _notify(batch, event, "REFUND_DECLINED", row, refund_id=p.refund_id, declined_reason=p.reason)


def _notify(
    batch: BatchState,
    event: events_pb2.Event,
    kind: str,
    row: TradeRow,
    *,
    refund_id: str,
    provider_refund_id: str = "",
    declined_reason: str = "",
) -> None:
    """Tell the owners of both sides about a refund, each seeing the trade as GetTrade shows it."""
    position = position_of(event)
    sides = (
        (row.buyer_account_id, row.buyer_owner_partner_id),
        (row.seller_account_id, row.seller_owner_partner_id),
    )
    for account_id, owner in sides:
        details = query_service_pb2.TradeRefundDetails(
            trade=market_views.trade_message(row, owner),
            refund_id=refund_id,
            amount=common_pb2.Money(amount_minor=row.amount_due_minor, currency=row.currency),
            provider_refund_id=provider_refund_id,
            declined_reason=declined_reason,
        )
        batch.notify(
            notifications.market(
                kind,
                account_id=account_id,
                owner_partner_id=owner,
                position=position,
                index=batch.next_index(position),
                at_us=at_us(event),
                trade_refund=details,
            )
        )


# --- The account streams: the points -----------------------------------------------------------


def bought_returned(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.BoughtPointsReturned
) -> None:
    """The purchase leaves the buyer's available points, in flight back to the seller."""
    trade = batch.trade(p.trade_id)
    # Committed after RefundRequested, in one unit: the trade is REFUNDING already.
    assert trade.status == "REFUNDING", trade
    _check_side(trade, p, trade.buyer_account_id)
    move = Move(
        "PURCHASE_RETURNED",
        -p.amount_points,
        available_after=p.available_points,
        order_id=trade.buy_order_id,
        trade_id=trade.trade_id,
    )
    apply_move(batch, event, p.account_id, move)
    key = refund_in_flight(trade.trade_id)
    # One refund at a time per trade: a refund asked again follows the decline of the last.
    assert batch.in_flight_row(key) is None, key
    batch.add_in_flight(InFlightRow(key, p.account_id, p.amount_points, position_of(event)))


def sold_returned(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.SoldPointsReturned
) -> None:
    """The refunded sale's points arrive back in the seller's available points."""
    # Committed after TradeRefunded, in one unit.
    _arrived(batch, event, p, "REFUNDED", "SALE_RETURNED")


def bought_restored(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.BoughtPointsRestored
) -> None:
    """The refund was declined: the purchase's points come back to the buyer."""
    # Committed after RefundDeclined, in one unit: the trade is SETTLED again.
    _arrived(batch, event, p, "SETTLED", "PURCHASE_RESTORED")


def _arrived(
    batch: BatchState,
    event: events_pb2.Event,
    p: events_pb2.SoldPointsReturned | events_pb2.BoughtPointsRestored,
    status: str,
    kind: str,
) -> None:
    """A refund's points in flight arrive: at the seller (refunded) or the buyer (declined)."""
    trade = batch.trade(p.trade_id)
    assert trade.status == status, trade
    to_seller = kind == "SALE_RETURNED"
    _check_side(trade, p, trade.seller_account_id if to_seller else trade.buyer_account_id)
    _settle(batch, trade, p.amount_points)
    move = Move(
        kind,
        p.amount_points,
        available_after=p.available_points,
        order_id=trade.sell_order_id if to_seller else trade.buy_order_id,
        trade_id=trade.trade_id,
    )
    apply_move(batch, event, p.account_id, move)


def _check_side(
    trade: TradeRow,
    p: events_pb2.BoughtPointsReturned
    | events_pb2.SoldPointsReturned
    | events_pb2.BoughtPointsRestored,
    account_id: str,
) -> None:
    """Check that a refund's account event is the trade's own side, for its whole quantity."""
    assert p.account_id == account_id, (trade, p)
    assert p.amount_points == trade.quantity_points, (trade, p)


def _settle(batch: BatchState, trade: TradeRow, amount_points: int) -> None:
    """End the refund's points in flight: they left the buyer for exactly this amount."""
    key = refund_in_flight(trade.trade_id)
    row = batch.in_flight_row(key)
    assert row is not None, f"no refund in flight for {key!r} (load keys_of(...).in_flight_ids)"
    assert (row.account_id, row.amount_points) == (trade.buyer_account_id, amount_points), row
    batch.remove_in_flight(key)
