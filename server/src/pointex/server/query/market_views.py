"""Market rows -> proto messages: orders, trades, levels, markets, an order's fee quote.

Order, Trade (one caller's view), PriceLevel, PublicTrade, Market and QuoteOrder's answer.
Pure functions, shared by the query servicer and the projections (which store notification
bodies built with them).
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from pointex.client.positions import position_message
from pointex.server.domain import market_fees, order_book
from pointex.server.domain.values import OrderSide
from pointex.server.query.projections.market_fees import market_of, version_of
from pointex.server.query.readstore.market_rows import LevelRow, MarketRow, OrderRow, TradeRow
from pointex.v1 import common_pb2, errors_pb2, query_service_pb2


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def side_value(name: str) -> common_pb2.OrderSide.ValueType:
    """Return the OrderSide of a stored side name (BUY, SELL)."""
    return common_pb2.OrderSide.Value("ORDER_SIDE_" + name)


def trade_status_value(name: str) -> common_pb2.TradeStatus.ValueType:
    """Return the TradeStatus of a stored status name."""
    return common_pb2.TradeStatus.Value("TRADE_STATUS_" + name)


def order_message(row: OrderRow) -> common_pb2.Order:
    """Return the proto Order of an order row (never a pending one)."""
    assert row.status != "PENDING", row
    order = common_pb2.Order(
        order_id=row.order_id,
        market_id=row.market_id,
        account_id=row.account_id,
        side=side_value(row.side),
        time_in_force=common_pb2.TimeInForce.Value("TIME_IN_FORCE_" + row.time_in_force),
        status=common_pb2.OrderStatus.Value("ORDER_STATUS_" + row.status),
        quantity_points=row.quantity_points,
        limit_price_minor=row.limit_price_minor,
        currency=row.currency,
        open_quantity_points=row.open_quantity_points,
        filled_quantity_points=row.filled_quantity_points,
        settled_quantity_points=row.settled_quantity_points,
        cancelled_quantity_points=row.cancelled_quantity_points,
        client_order_id=row.client_order_id,
        placed_at=_timestamp(row.placed_at_us),
        updated_at=_timestamp(row.updated_at_us),
    )
    if row.cancel_reason:
        order.cancel_reason = common_pb2.OrderCancelReason.Value(
            "ORDER_CANCEL_REASON_" + row.cancel_reason
        )
    if row.reject_reason:
        order.reject_reason = errors_pb2.ErrorReason.Value("ERROR_REASON_" + row.reject_reason)
    return order


def trade_message(row: TradeRow, viewer_partner_id: str | None) -> common_pb2.Trade:
    """Return the proto Trade as one viewer sees it.

    Args:
        row: The trade.
        viewer_partner_id: None for an operator (both sides shown); otherwise the partner
            viewing it, who sees the ids of the sides it owns and, as the buyer's owner,
            the checkout URL.
    """
    sees_buyer = viewer_partner_id in {None, row.buyer_owner_partner_id}
    sees_seller = viewer_partner_id in {None, row.seller_owner_partner_id}
    trade = common_pb2.Trade(
        trade_id=row.trade_id,
        market_id=row.market_id,
        status=trade_status_value(row.status),
        buy_order_id=row.buy_order_id if sees_buyer else "",
        sell_order_id=row.sell_order_id if sees_seller else "",
        buyer_account_id=row.buyer_account_id if sees_buyer else "",
        seller_account_id=row.seller_account_id if sees_seller else "",
        maker_side=side_value(row.maker_side),
        quantity_points=row.quantity_points,
        price_minor=row.price_minor,
        currency=row.currency,
        notional_minor=row.notional_minor,
        buyer_fee_minor=row.buyer_fee_minor,
        seller_fee_minor=row.seller_fee_minor,
        amount_due_minor=row.amount_due_minor,
        seller_proceeds_minor=row.seller_proceeds_minor,
        payment_deadline=_timestamp(row.payment_deadline_us),
        provider_id=row.provider_id,
        payment_id=row.payment_id,
        checkout_url=row.checkout_url if sees_buyer else "",
        refund_required=row.refund_required,
        matched_at=_timestamp(row.matched_at_us),
    )
    if row.cancel_reason:
        trade.cancel_reason = common_pb2.TradeCancelReason.Value(
            "TRADE_CANCEL_REASON_" + row.cancel_reason
        )
    if row.settled_at_us:
        trade.settled_at.CopyFrom(_timestamp(row.settled_at_us))
    if row.cancelled_at_us:
        trade.cancelled_at.CopyFrom(_timestamp(row.cancelled_at_us))
    return trade


def public_trade_message(row: TradeRow) -> query_service_pb2.PublicTrade:
    """Return a trade as public market data: no account or order ids."""
    return query_service_pb2.PublicTrade(
        trade_id=row.trade_id,
        price_minor=row.price_minor,
        quantity_points=row.quantity_points,
        maker_side=side_value(row.maker_side),
        status=trade_status_value(row.status),
        matched_at=_timestamp(row.matched_at_us),
    )


def level_message(row: LevelRow) -> query_service_pb2.PriceLevel:
    """Return one price level of a book."""
    return query_service_pb2.PriceLevel(
        price_minor=row.price_minor,
        quantity_points=row.quantity_points,
        order_count=row.order_count,
    )


def market_message(row: MarketRow) -> common_pb2.Market:
    """Return a market's configuration as recorded, with its fee schedule's version."""
    market = common_pb2.Market.FromString(row.body)
    market.fee_schedule_version = row.fee_schedule_version
    return market


def order_quote_reply(
    as_of: int, row: MarketRow, side: OrderSide, quantity_points: int, limit_price_minor: int
) -> query_service_pb2.QuoteOrderResponse:
    """Return QuoteOrder's answer: the fee of one full fill at the limit, and its schedule.

    The order's terms must fit the market's bounds, as PlaceOrder's must (InvalidArgument).
    """
    market = market_of(row)
    order_book.check_bounds(market, quantity_points, limit_price_minor)
    quoted = market_fees.quote(market, version_of(row), side, quantity_points, limit_price_minor)
    return query_service_pb2.QuoteOrderResponse(
        as_of=position_message(as_of),
        quote=common_pb2.OrderFeeQuote(
            fee_minor=quoted.quote.fee_minor, schedule_version=quoted.quote.schedule_version
        ),
        schedule=common_pb2.FeeSchedule(
            rate_bps=quoted.schedule.rate_bps, fixed_minor=quoted.schedule.fixed_minor
        ),
        notional_minor=quoted.notional_minor,
        total_minor=quoted.total_minor,
        currency=market.currency,
    )
