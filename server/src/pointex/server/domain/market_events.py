"""Events of market streams (`market-<id>`) and trade process streams (`trade-<id>`).

Named and shaped as in events.proto. A market stream orders the book: OrderPlaced events
give time priority. A trade stream is the trade's process record, from TradeCreated (in
the same append as its TradeMatched) to TradeSettled or TradeCancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pointex.server.domain.lots import NO_LOTS, Lot
from pointex.server.domain.values import (
    Instant,
    Market,
    Money,
    OrderCancelReason,
    OrderSide,
    TimeInForce,
    TradeCancelReason,
)


@dataclass(frozen=True, slots=True)
class MarketConfigured:
    """A market's configuration was recorded; it applies to orders placed after it."""

    market: Market


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """An order entered the market, before any matching."""

    order_id: str
    market_id: str
    account_id: str
    side: OrderSide
    quantity_points: int
    limit_price_minor: int
    currency: str
    time_in_force: TimeInForce
    client_order_id: str


@dataclass(frozen=True, slots=True)
class OrderRejected:
    """A held order could not enter the book; what its account held is released next."""

    order_id: str
    market_id: str
    account_id: str
    side: OrderSide
    quantity_points: int
    reason: str  # an ErrorReason name


@dataclass(frozen=True, slots=True)
class TradeMatched:
    """A BUY and a SELL order matched at the resting (maker) order's price."""

    trade_id: str
    market_id: str
    buy_order_id: str
    sell_order_id: str
    buyer_account_id: str
    seller_account_id: str
    maker_side: OrderSide
    quantity_points: int
    price_minor: int
    buy_open_quantity_points: int  # after this match
    sell_open_quantity_points: int  # after this match


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """An order's remainder left the book unmatched."""

    order_id: str
    market_id: str
    account_id: str
    side: OrderSide
    reason: OrderCancelReason
    cancelled_quantity_points: int


@dataclass(frozen=True, slots=True)
class OrderQuantityReturned:
    """A cancelled trade's quantity went back into its still-resting SELL order."""

    order_id: str
    market_id: str
    trade_id: str
    quantity_points: int
    open_quantity_points: int  # after this event


MarketEvent = (
    MarketConfigured
    | OrderPlaced
    | OrderRejected
    | TradeMatched
    | OrderCancelled
    | OrderQuantityReturned
)


@dataclass(frozen=True, slots=True)
class TradeCreated:
    """A match created a trade, PENDING_PAYMENT until its deadline."""

    trade_id: str
    market_id: str
    buy_order_id: str
    sell_order_id: str
    buyer_account_id: str
    seller_account_id: str
    maker_side: OrderSide
    quantity_points: int
    price_minor: int
    currency: str
    notional_minor: int
    buyer_fee_minor: int
    seller_fee_minor: int
    amount_due_minor: int
    seller_proceeds_minor: int
    payment_deadline: Instant


@dataclass(frozen=True, slots=True)
class PaymentRequested:
    """The provider created a payment for the trade."""

    trade_id: str
    provider_id: str
    payment_id: str
    checkout_url: str
    amount: Money
    payment_deadline: Instant


@dataclass(frozen=True, slots=True)
class PaymentConfirmed:
    """A verified confirmation was recorded; `late` ones only flag a refund."""

    trade_id: str
    provider_id: str
    payment_id: str
    provider_event_id: str
    amount: Money
    signed_at: Instant
    key_id: str
    late: bool
    # The lots the seller's points were delivered from, with this confirmation: the buyer's.
    lots: tuple[Lot, ...] = NO_LOTS


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    """A verified failure was recorded while the trade was pending."""

    trade_id: str
    provider_id: str
    payment_id: str
    provider_event_id: str
    amount: Money
    signed_at: Instant
    key_id: str


@dataclass(frozen=True, slots=True)
class TradeSettled:
    """Both settlement steps are done; the seller's proceeds are recorded."""

    trade_id: str
    seller_proceeds: Money


@dataclass(frozen=True, slots=True)
class TradeCancelled:
    """The trade ended without settling; its quantity goes back to the seller's side."""

    trade_id: str
    reason: TradeCancelReason


@dataclass(frozen=True, slots=True)
class RefundRequired:
    """A payment was confirmed for a cancelled trade: the buyer must be refunded."""

    trade_id: str
    provider_id: str
    payment_id: str
    provider_event_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class RefundRequested:
    """The buyer asked for a settled trade's refund (cooling-off); the points left the buyer."""

    trade_id: str
    refund_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class TradeRefunded:
    """The provider gave the payment back; the points returned to the seller."""

    trade_id: str
    refund_id: str
    provider_refund_id: str


@dataclass(frozen=True, slots=True)
class RefundDeclined:
    """The provider refused the refund for good; the points came back to the buyer."""

    trade_id: str
    refund_id: str
    reason: str


TradeEvent = (
    TradeCreated
    | PaymentRequested
    | PaymentConfirmed
    | PaymentFailed
    | TradeSettled
    | TradeCancelled
    | RefundRequired
    | RefundRequested
    | TradeRefunded
    | RefundDeclined
)

# Stable type names and schema versions, written literally (see events.py).
MARKET_EVENT_TYPES: Final[dict[type[MarketEvent], tuple[str, int]]] = {
    MarketConfigured: ("MarketConfigured", 1),
    OrderPlaced: ("OrderPlaced", 1),
    OrderRejected: ("OrderRejected", 1),
    TradeMatched: ("TradeMatched", 1),
    OrderCancelled: ("OrderCancelled", 1),
    OrderQuantityReturned: ("OrderQuantityReturned", 1),
}

TRADE_EVENT_TYPES: Final[dict[type[TradeEvent], tuple[str, int]]] = {
    TradeCreated: ("TradeCreated", 1),
    PaymentRequested: ("PaymentRequested", 1),
    PaymentConfirmed: ("PaymentConfirmed", 1),
    PaymentFailed: ("PaymentFailed", 1),
    TradeSettled: ("TradeSettled", 1),
    TradeCancelled: ("TradeCancelled", 1),
    RefundRequired: ("RefundRequired", 1),
    RefundRequested: ("RefundRequested", 1),
    TradeRefunded: ("TradeRefunded", 1),
    RefundDeclined: ("RefundDeclined", 1),
}
