"""A market's fees: the version of its fee schedule, the fee of an order's side, its quote.

A market charges each trade a fee per side, in money (`values.FeeSchedule`): the buyer's is
added to what the buyer pays, the seller's deducted from the proceeds (never beyond the
notional). Both sides' schedules are one fee schedule, versioned by the market's
configurations: its version is the number of MarketConfigured events recorded on the
market's stream when the one that last changed either fee was recorded (`configured`). A
configuration that changes something else (the payment window, the bounds, `open`) keeps
the version, and with it the quotes made under it. The order book holds it
(`OrderBook.fee_version`); the query side computes it with the same function from the same
events, so both sides name the same version.

A quote (`quote`) states the fee of a full fill in one trade at the order's limit price and
the version of the schedule it comes from. What it binds is the schedule: a PlaceOrder that
carries one is placed only if the market's version is the quote's when the market decides
the placement (`require_quote`); each trade then pays its side's fee on its own notional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pointex.server.domain import errors
from pointex.server.domain.values import FeeSchedule, Market, OrderFeeQuote, OrderSide

# A market's two fee schedules, (buyer_fee, seller_fee): what its version follows.
Fees = tuple[FeeSchedule, FeeSchedule]


@dataclass(frozen=True, slots=True)
class FeeVersion:
    """How many configurations a market recorded, and at which of them its fees last changed."""

    configurations: int = 0  # MarketConfigured events so far.
    schedule_version: int = 0  # `configurations` when a fee last changed (0: not configured).


NOT_CONFIGURED: Final = FeeVersion()


def fees_of(market: Market) -> Fees:
    """Return what a market's fee schedule version follows: its buyer's and seller's fees."""
    return market.buyer_fee, market.seller_fee


def configured(before: FeeVersion, fees_before: Fees | None, fees: Fees) -> FeeVersion:
    """Return the version after one more MarketConfigured with `fees` (None: the first one)."""
    configurations = before.configurations + 1
    changed = fees_before is None or fees != fees_before
    return FeeVersion(configurations, configurations if changed else before.schedule_version)


def side_fee_minor(market: Market, side: OrderSide, notional_minor: int) -> int:
    """Return the fee `side` pays on a trade of `notional_minor` under the market's schedule."""
    if side is OrderSide.BUY:
        return market.buyer_fee.fee_minor(notional_minor)
    # The seller's fee never exceeds the notional: proceeds are never negative.
    return min(market.seller_fee.fee_minor(notional_minor), notional_minor)


@dataclass(frozen=True, slots=True)
class OrderQuote:
    """An order's quote, with what it comes from: the side's schedule and the notional."""

    quote: OrderFeeQuote
    schedule: FeeSchedule  # The side's: the market's buyer_fee or seller_fee.
    notional_minor: int
    total_minor: int  # Notional + fee for a BUY (the most it pays), minus it for a SELL.


def quote(
    market: Market, version: FeeVersion, side: OrderSide, quantity_points: int, price_minor: int
) -> OrderQuote:
    """Return the quote of an order: its side's fee for one trade of all of it at its limit."""
    notional = quantity_points * price_minor
    fee = side_fee_minor(market, side, notional)
    schedule = market.buyer_fee if side is OrderSide.BUY else market.seller_fee
    total = notional + fee if side is OrderSide.BUY else notional - fee
    return OrderQuote(OrderFeeQuote(fee, version.schedule_version), schedule, notional, total)


def require_quote(  # noqa: PLR0917 - an order's terms and its quote.
    market: Market,
    version: FeeVersion,
    side: OrderSide,
    quantity_points: int,
    price_minor: int,
    quoted: OrderFeeQuote | None,
) -> None:
    """Refuse an order whose fee quote is not of the schedule in force, or not of this order.

    Raises FEE_SCHEDULE_CHANGED (with the version and this order's fee now) when the schedule
    changed since the quote, and INVALID_ARGUMENT naming `fee_quote.fee_minor` when the quote
    is of this schedule but not of this order (another side, quantity or price).
    """
    if quoted is None:
        return
    now = quote(market, version, side, quantity_points, price_minor).quote
    if quoted.schedule_version != now.schedule_version:
        raise errors.FailedPrecondition(
            errors.FEE_SCHEDULE_CHANGED,
            "the market's fee schedule changed since the quote; quote again",
            schedule_version=str(now.schedule_version),
            fee_minor=str(now.fee_minor),
        )
    if quoted.fee_minor != now.fee_minor:
        raise errors.InvalidArgument(
            errors.INVALID_FIELD,
            f"the quote of this order is {now.fee_minor}",
            field="fee_quote.fee_minor",
        )
