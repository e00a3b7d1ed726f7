"""Commands a market's order book decides: imperative, frozen, named as in the proto.

Who may act on the order's account is checked against the account before a command
reaches the book; the book checks what only it knows (market, price, book state).
"""

from __future__ import annotations

from dataclasses import dataclass

from pointex.server.domain.values import Market, OrderFeeQuote, OrderSide, TimeInForce


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Enter an order into the book and match it (a SELL order's points are already held)."""

    order_id: str
    account_id: str
    market_id: str
    side: OrderSide
    quantity_points: int
    limit_price_minor: int
    time_in_force: TimeInForce
    client_order_id: str
    # The quote the caller agreed to: placed only under its schedule (domain/market_fees.py).
    fee_quote: OrderFeeQuote | None = None


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Take a resting order's remainder out of the book."""

    market_id: str
    order_id: str


@dataclass(frozen=True, slots=True)
class ReturnTradeQuantity:
    """A trade was cancelled: give its quantity back to its SELL order if that still rests."""

    market_id: str
    trade_id: str
    sell_order_id: str
    quantity_points: int


@dataclass(frozen=True, slots=True)
class ConfigureMarket:
    """Record the market's configuration if it differs from the one recorded last."""

    market: Market


@dataclass(frozen=True, slots=True)
class RejectOrder:
    """A held SELL order cannot enter the book: record why, so its points are released."""

    order: PlaceOrder
    reason: str  # an ErrorReason name


MarketCommand = PlaceOrder | CancelOrder | ReturnTradeQuantity | ConfigureMarket | RejectOrder
