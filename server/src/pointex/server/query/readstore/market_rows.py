"""Rows and filters of the market read models: markets, orders, trades, price levels.

Enums are stored by their proto value name without the prefix (`SELL`, `PARTIALLY_FILLED`,
`PENDING_PAYMENT`), as for accounts. One status exists only in the read store: `PENDING`, an
order held on its account (PointsHeld, BuyReserved) that has not reached the market yet; it
is never served, and the order appears once OrderPlaced or OrderRejected is projected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Order statuses as stored. RESTING orders are in the book (depth, I2).
ORDER_PENDING = "PENDING"
ORDER_RESTING = ("OPEN", "PARTIALLY_FILLED")


@dataclass(frozen=True, slots=True)
class MarketRow:
    """A market's latest configuration (a serialized `pointex.v1.Market`) and fees' version.

    `configurations` counts the market's MarketConfigured events; `fee_schedule_version` is
    that count at the one that last changed a fee (domain/market_fees.py). Both are 0 in a
    row projected before they were kept (a rebuild sets them).
    """

    market_id: str
    currency: str
    body: bytes
    configured_position: int
    updated_at_us: int
    configurations: int = 0
    fee_schedule_version: int = 0


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order as projected; quantity = open + filled + cancelled, settled <= filled."""

    order_id: str
    market_id: str
    account_id: str
    owner_partner_id: str
    side: str
    time_in_force: str
    status: str
    quantity_points: int
    limit_price_minor: int
    currency: str
    open_quantity_points: int
    filled_quantity_points: int
    settled_quantity_points: int
    cancelled_quantity_points: int
    client_order_id: str
    cancel_reason: str  # an OrderCancelReason name, or ""
    reject_reason: str  # an ErrorReason name, or ""
    placed_position: int  # the listing key: position of OrderPlaced (or of the first event)
    placed_at_us: int
    updated_at_us: int

    @property
    def resting(self) -> bool:
        """Return whether the order rests in the book."""
        return self.status in ORDER_RESTING


@dataclass(frozen=True, slots=True)
class TradeRow:
    """A trade as projected, with both sides and the partners owning them."""

    trade_id: str
    market_id: str
    status: str
    buy_order_id: str
    sell_order_id: str
    buyer_account_id: str
    seller_account_id: str
    buyer_owner_partner_id: str
    seller_owner_partner_id: str
    maker_side: str
    quantity_points: int
    price_minor: int
    currency: str
    notional_minor: int
    buyer_fee_minor: int
    seller_fee_minor: int
    amount_due_minor: int
    seller_proceeds_minor: int
    payment_deadline_us: int
    provider_id: str
    payment_id: str
    checkout_url: str
    cancel_reason: str  # a TradeCancelReason name, or ""
    refund_required: bool
    matched_position: int  # the listing key: position of TradeCreated
    matched_at_us: int
    settled_at_us: int  # 0 unless SETTLED
    cancelled_at_us: int  # 0 unless CANCELLED
    updated_at_us: int


@dataclass(frozen=True, slots=True)
class LevelRow:
    """One price level of one side of a book: total open quantity and order count.

    In `Changes` the two figures are deltas to add to the stored level; a level whose count
    drops to zero is deleted.
    """

    market_id: str
    side: str
    price_minor: int
    quantity_points: int
    order_count: int


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Which orders a listing returns; empty values mean "any"."""

    owner_partner_id: str = ""
    account_id: str = ""
    market_id: str = ""
    statuses: tuple[str, ...] = ()
    side: str = ""


@dataclass(frozen=True, slots=True)
class TradeFilter:
    """Which trades a listing returns; empty values mean "any"."""

    owner_partner_id: str = ""  # trades where this partner owns the buyer or the seller
    account_id: str = ""  # trades where this account is the buyer or the seller
    market_id: str = ""
    order_id: str = ""  # trades of this order, BUY or SELL
    statuses: tuple[str, ...] = ()
    refund_required_only: bool = False


@dataclass(frozen=True, slots=True)
class MarketStats:
    """Figures of the trades not cancelled: the latest, and those of one time window."""

    last_price_minor: int = 0
    last_trade_at_us: int = 0
    open_price_minor: int = 0
    high_price_minor: int = 0
    low_price_minor: int = 0
    volume_points: int = 0
    volume_minor: int = 0
    trade_count: int = 0


# Columns, in the order both adapters' statements and the values below use.
MARKET_COLUMNS = (
    "market_id, currency, body, configured_position, updated_at_us, configurations, "
    "fee_schedule_version"
)
ORDER_COLUMNS = (
    "order_id, market_id, account_id, owner_partner_id, side, time_in_force, status, "
    "quantity_points, limit_price_minor, currency, open_quantity_points, "
    "filled_quantity_points, settled_quantity_points, cancelled_quantity_points, "
    "client_order_id, cancel_reason, reject_reason, placed_position, placed_at_us, updated_at_us"
)
TRADE_COLUMNS = (
    "trade_id, market_id, status, buy_order_id, sell_order_id, buyer_account_id, "
    "seller_account_id, buyer_owner_partner_id, seller_owner_partner_id, maker_side, "
    "quantity_points, price_minor, currency, notional_minor, buyer_fee_minor, seller_fee_minor, "
    "amount_due_minor, seller_proceeds_minor, payment_deadline_us, provider_id, payment_id, "
    "checkout_url, cancel_reason, refund_required, matched_position, matched_at_us, "
    "settled_at_us, cancelled_at_us, updated_at_us"
)
LEVEL_COLUMNS = "market_id, side, price_minor, quantity_points, order_count"


def market_values(row: MarketRow) -> tuple[Any, ...]:
    """Return a market's columns in `MARKET_COLUMNS` order."""
    return tuple(getattr(row, field.name) for field in fields(MarketRow))


def order_values(row: OrderRow) -> tuple[Any, ...]:
    """Return an order's columns in `ORDER_COLUMNS` order."""
    return tuple(getattr(row, field.name) for field in fields(OrderRow))


def trade_values(row: TradeRow) -> tuple[Any, ...]:
    """Return a trade's columns in `TRADE_COLUMNS` order."""
    return tuple(getattr(row, field.name) for field in fields(TradeRow))


def level_values(row: LevelRow) -> tuple[Any, ...]:
    """Return a level's columns in `LEVEL_COLUMNS` order."""
    return (row.market_id, row.side, row.price_minor, row.quantity_points, row.order_count)


def market_row(values: Any) -> MarketRow:
    """Build a market from a row of `MARKET_COLUMNS`."""
    return MarketRow(
        str(values[0]),
        str(values[1]),
        bytes(values[2]),
        int(values[3]),
        int(values[4]),
        int(values[5]),
        int(values[6]),
    )


def order_row(values: Any) -> OrderRow:
    """Build an order from a row of `ORDER_COLUMNS`."""
    return OrderRow(*values)


def trade_row(values: Any) -> TradeRow:
    """Build a trade from a row of `TRADE_COLUMNS` (SQLite stores the flag as 0 or 1)."""
    fields = list(values)
    fields[23] = bool(fields[23])
    return TradeRow(*fields)


def level_row(values: Any) -> LevelRow:
    """Build a level from a row of `LEVEL_COLUMNS`."""
    return LevelRow(*values)


# The slots and the column lists must name the same columns in the same order.
assert ", ".join(field.name for field in fields(MarketRow)) == MARKET_COLUMNS
assert ", ".join(field.name for field in fields(OrderRow)) == ORDER_COLUMNS
assert ", ".join(field.name for field in fields(TradeRow)) == TRADE_COLUMNS
