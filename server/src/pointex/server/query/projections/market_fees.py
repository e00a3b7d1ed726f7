"""Market fees in the projections: each market's fee schedule version, and its domain terms.

A market's row keeps how many configurations (MarketConfigured) it recorded and the version
of its fee schedule: that count at the configuration that last changed its buyer's or
seller's fee. Both come from the domain's own `market_fees.configured`, applied to the same
events in the same order as the order book applies them, so QuoteOrder names exactly the
version the market checks a quote against. A batch holding a MarketConfigured is given the
stored market rows (`keys_of(...).markets`) to count on from.
"""

from __future__ import annotations

from pointex.server.domain import market_fees
from pointex.server.domain.values import FeeSchedule, Market, Span
from pointex.server.query.readstore.market_rows import MarketRow
from pointex.v1 import common_pb2


def fees_of(message: common_pb2.Market) -> market_fees.Fees:
    """Return a market's (buyer_fee, seller_fee) as the domain's schedules."""
    buyer, seller = message.buyer_fee, message.seller_fee
    return (
        FeeSchedule(buyer.rate_bps, buyer.fixed_minor),
        FeeSchedule(seller.rate_bps, seller.fixed_minor),
    )


def version_of(row: MarketRow | None) -> market_fees.FeeVersion:
    """Return the configurations counted and the fee schedule version of a stored market."""
    if row is None:
        return market_fees.NOT_CONFIGURED
    return market_fees.FeeVersion(row.configurations, row.fee_schedule_version)


def version_after(previous: MarketRow | None, message: common_pb2.Market) -> market_fees.FeeVersion:
    """Return the version once `message` is recorded after `previous` (None: the first)."""
    before = None if previous is None else fees_of(common_pb2.Market.FromString(previous.body))
    return market_fees.configured(version_of(previous), before, fees_of(message))


def market_of(row: MarketRow) -> Market:
    """Return the domain market of a stored configuration (for quotes and bounds)."""
    message = common_pb2.Market.FromString(row.body)
    buyer_fee, seller_fee = fees_of(message)
    return Market(
        market_id=message.market_id,
        currency=message.currency,
        buyer_fee=buyer_fee,
        seller_fee=seller_fee,
        payment_window=Span(message.payment_window.ToMilliseconds()),
        max_price_minor=message.max_price_minor,
        max_quantity_points=message.max_quantity_points,
        provider_id=message.provider_id,
        open=message.open,
    )
