"""A trade's process: PENDING_PAYMENT -> SETTLED | CANCELLED, and what each step writes.

The trade stream (`trade-<id>`) is the process record. Every function here is pure: it
takes the trade as rebuilt from its stream and the server's time, and returns the trade
events of the next step (the caller commits them in one unit with the account or market
step that goes with them, at the trade stream's expected version).

Settlement: PaymentConfirmed (with the seller's PointsSold), then TradeSettled (with the
buyer's PointsBought). Cancellation: TradeCancelled (with the quantity's return to the
resting SELL order, or the seller's PointsReleased). A confirmation after cancellation:
PaymentConfirmed (late) and RefundRequired, once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from pointex.server.domain import errors
from pointex.server.domain.lots import NO_LOTS, Lot
from pointex.server.domain.market_events import (
    PaymentConfirmed,
    PaymentFailed,
    PaymentRequested,
    RefundDeclined,
    RefundRequested,
    RefundRequired,
    TradeCancelled,
    TradeCreated,
    TradeEvent,
    TradeMatched,
    TradeRefunded,
    TradeSettled,
)
from pointex.server.domain.market_fees import side_fee_minor
from pointex.server.domain.values import Instant, Market, Money, OrderSide, TradeCancelReason


class TradeStatus(enum.Enum):
    """Where a trade's process is; SETTLING is a confirmed trade not yet delivered."""

    PENDING_PAYMENT = "PENDING_PAYMENT"
    SETTLING = "SETTLING"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"
    REFUNDING = "REFUNDING"  # Cooling-off: the buyer's points left; the provider is asked.
    REFUNDED = "REFUNDED"


@dataclass(frozen=True, slots=True)
class Trade:
    """A trade as rebuilt from its stream."""

    created: TradeCreated
    status: TradeStatus
    version: int
    payment: PaymentRequested | None = None
    cancel_reason: TradeCancelReason | None = None
    refund_required: bool = False
    # The lots of the points the seller delivered (PaymentConfirmed): the buyer gets them.
    delivered_lots: tuple[Lot, ...] = NO_LOTS
    # The cooling-off refund under way or made (REFUNDING, REFUNDED), if any.
    refund: RefundRequested | None = None
    # The latest refund the provider declined (the trade is SETTLED again).
    declined: RefundDeclined | None = None

    @property
    def trade_id(self) -> str:
        """Return the trade's id."""
        return self.created.trade_id

    @property
    def amount_due(self) -> Money:
        """Return what the buyer must pay."""
        return Money(self.created.amount_due_minor, self.created.currency)

    def past_deadline(self, now: Instant) -> bool:
        """Tell whether the payment deadline has passed at `now`."""
        return now.unix_ms >= self.created.payment_deadline.unix_ms


def evolve(trade: Trade | None, event: TradeEvent) -> Trade:
    """Return the trade after `event`."""
    if isinstance(event, TradeCreated):
        assert trade is None, "a trade is created once"
        return Trade(event, TradeStatus.PENDING_PAYMENT, 1)
    assert trade is not None, f"{type(event).__name__} before TradeCreated"
    trade = replace(trade, version=trade.version + 1)
    match event:
        case PaymentRequested():
            trade = replace(trade, payment=event)
        case PaymentConfirmed(late=False):
            assert trade.status is TradeStatus.PENDING_PAYMENT, trade
            trade = replace(trade, status=TradeStatus.SETTLING, delivered_lots=event.lots)
        case TradeSettled():
            assert trade.status is TradeStatus.SETTLING, trade
            trade = replace(trade, status=TradeStatus.SETTLED)
        case TradeCancelled():
            assert trade.status is TradeStatus.PENDING_PAYMENT, trade
            trade = replace(trade, status=TradeStatus.CANCELLED, cancel_reason=event.reason)
        case RefundRequired():
            trade = replace(trade, refund_required=True)
        case RefundRequested():
            assert trade.status is TradeStatus.SETTLED, trade
            trade = replace(trade, status=TradeStatus.REFUNDING, refund=event)
        case TradeRefunded():
            assert trade.status is TradeStatus.REFUNDING, trade
            trade = replace(trade, status=TradeStatus.REFUNDED)
        case RefundDeclined():
            assert trade.status is TradeStatus.REFUNDING, trade
            trade = replace(trade, status=TradeStatus.SETTLED, refund=None, declined=event)
    # PaymentFailed and a late PaymentConfirmed are recorded and change no state.
    return trade


@dataclass(frozen=True, slots=True)
class Callback:
    """A verified payment callback, as the domain sees it."""

    provider_id: str
    payment_id: str
    trade_id: str
    confirmed: bool
    amount: Money
    provider_event_id: str
    signed_at: Instant
    key_id: str


def check_callback(trade: Trade | None, callback: Callback) -> Trade:
    """Raise the DomainError a callback meets against the trade, else return the trade."""
    if trade is None:
        raise errors.NotFound(errors.TRADE_NOT_FOUND, "no such trade", trade_id=callback.trade_id)
    payment = trade.payment
    if payment is None:
        raise errors.NotFound(
            errors.PAYMENT_NOT_FOUND,
            "no payment is recorded for the trade yet",
            payment_id=callback.payment_id,
        )
    if (payment.provider_id, payment.payment_id) != (callback.provider_id, callback.payment_id):
        raise errors.FailedPrecondition(
            errors.TRADE_MISMATCH,
            "the payment belongs to another trade",
            trade_id=callback.trade_id,
            payment_id=callback.payment_id,
        )
    if callback.amount.currency != trade.created.currency:
        raise errors.FailedPrecondition(
            errors.CURRENCY_MISMATCH, "currency differs from the trade's", trade_id=trade.trade_id
        )
    if callback.amount.amount_minor != trade.created.amount_due_minor:
        raise errors.FailedPrecondition(
            errors.AMOUNT_MISMATCH, "amount differs from the amount due", trade_id=trade.trade_id
        )
    return trade


def confirmation(trade: Trade, callback: Callback, *, late: bool) -> PaymentConfirmed:
    """Return the record of a verified confirmation."""
    return PaymentConfirmed(
        trade.trade_id,
        callback.provider_id,
        callback.payment_id,
        callback.provider_event_id,
        callback.amount,
        callback.signed_at,
        callback.key_id,
        late,
    )


def failure(trade: Trade, callback: Callback) -> PaymentFailed:
    """Return the record of a verified failure."""
    return PaymentFailed(
        trade.trade_id,
        callback.provider_id,
        callback.payment_id,
        callback.provider_event_id,
        callback.amount,
        callback.signed_at,
        callback.key_id,
    )


def late_confirmation(trade: Trade, callback: Callback) -> list[TradeEvent]:
    """Return what a confirmation of a cancelled trade records: once, a refund flag."""
    assert trade.status is TradeStatus.CANCELLED, trade
    if trade.refund_required:
        return []  # The refund is flagged already; a further confirmation records nothing.
    return [
        confirmation(trade, callback, late=True),
        RefundRequired(
            trade.trade_id,
            callback.provider_id,
            callback.payment_id,
            callback.provider_event_id,
            callback.amount,
        ),
    ]


def settled(trade: Trade) -> TradeSettled:
    """Return the end of a settlement: the seller's proceeds."""
    assert trade.status is TradeStatus.SETTLING, trade
    return TradeSettled(
        trade.trade_id, Money(trade.created.seller_proceeds_minor, trade.created.currency)
    )


def created_from(match: TradeMatched, market: Market, now: Instant) -> TradeCreated:
    """Return the trade a match creates: its amounts by the market's fees, and its deadline."""
    notional = match.quantity_points * match.price_minor
    buyer_fee = side_fee_minor(market, OrderSide.BUY, notional)
    seller_fee = side_fee_minor(market, OrderSide.SELL, notional)  # At most the notional.
    return TradeCreated(
        match.trade_id,
        match.market_id,
        match.buy_order_id,
        match.sell_order_id,
        match.buyer_account_id,
        match.seller_account_id,
        match.maker_side,
        match.quantity_points,
        match.price_minor,
        market.currency,
        notional,
        buyer_fee,
        seller_fee,
        notional + buyer_fee,
        notional - seller_fee,
        Instant(now.unix_ms + market.payment_window.ms),
    )
