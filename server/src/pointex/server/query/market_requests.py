"""Market query requests -> validated filters; who may see which order and trade.

As in `requests`: every field is checked before any waiting or reading, and a partner sees
only the orders and trades of accounts it owns (PERMISSION_DENIED / NOT_OWNER otherwise).
Market data (books, recent trades, statistics, markets) is visible to every caller.
"""

from __future__ import annotations

from typing import Final

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.values import Principal, Role
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.status import InvalidRequest
from pointex.server.query.readstore.market_rows import (
    ORDER_PENDING,
    MarketRow,
    OrderFilter,
    OrderRow,
    TradeFilter,
    TradeRow,
)
from pointex.server.query.requests import PAGE_SIZE_TOO_LARGE, enum_names
from pointex.v1 import common_pb2, query_service_pb2

# Reasons of pointex.v1.ErrorReason that only the market reads use.
ORDER_NOT_FOUND: Final = "ORDER_NOT_FOUND"
TRADE_NOT_FOUND: Final = "TRADE_NOT_FOUND"
MARKET_NOT_FOUND: Final = "MARKET_NOT_FOUND"


def viewer(caller: Principal) -> str | None:
    """Return whose view of a trade the caller gets: None (both sides) or its partner id."""
    return None if caller.role is Role.OPERATOR else caller.principal_id


def _owner_filter(caller: Principal) -> str:
    return caller.principal_id if caller.role is Role.PARTNER else ""


def require_order(caller: Principal, order: OrderRow | None, order_id: str) -> OrderRow:
    """Return the order if it exists (placed or rejected) and the caller may see it."""
    if order is None or order.status == ORDER_PENDING:
        raise errors.NotFound(ORDER_NOT_FOUND, "no such order", order_id=order_id)
    if not caller.caller.may_act_for(order.owner_partner_id):
        raise errors.PermissionDenied(
            errors.NOT_OWNER, "the order belongs to another partner", field="order_id"
        )
    return order


def require_trade(caller: Principal, trade: TradeRow | None, trade_id: str) -> TradeRow:
    """Return the trade if it exists and the caller owns its buyer or its seller."""
    if trade is None:
        raise errors.NotFound(TRADE_NOT_FOUND, "no such trade", trade_id=trade_id)
    owners = (trade.buyer_owner_partner_id, trade.seller_owner_partner_id)
    if not any(caller.caller.may_act_for(owner) for owner in owners):
        raise errors.PermissionDenied(
            errors.NOT_OWNER, "the trade belongs to other partners", field="trade_id"
        )
    return trade


def require_market(markets: list[MarketRow], market_id: str) -> MarketRow:
    """Return the named market, if configured."""
    for market in markets:
        if market.market_id == market_id:
            return market
    raise errors.NotFound(MARKET_NOT_FOUND, "no such market", market_id=market_id)


def _optional_id(field: str, value: str) -> str:
    return convert.identifier(field, value) if value else ""


def order_filter(caller: Principal, request: query_service_pb2.ListOrdersRequest) -> OrderFilter:
    """Return the filter of a ListOrders request; a partner lists its own orders only."""
    side = ""
    if request.side:
        side = enum_names("side", [request.side], common_pb2.OrderSide, "ORDER_SIDE_", 1)[0]
    return OrderFilter(
        owner_partner_id=_owner_filter(caller),
        account_id=_optional_id("account_id", request.account_id),
        market_id=_optional_id("market_id", request.market_id),
        statuses=enum_names(
            "statuses",
            request.statuses,
            common_pb2.OrderStatus,
            "ORDER_STATUS_",
            limits.order_filter_statuses_max,
        ),
        side=side,
    )


def trade_filter(caller: Principal, request: query_service_pb2.ListTradesRequest) -> TradeFilter:
    """Return the filter of a ListTrades request; a partner lists its own trades only."""
    return TradeFilter(
        owner_partner_id=_owner_filter(caller),
        account_id=_optional_id("account_id", request.account_id),
        market_id=_optional_id("market_id", request.market_id),
        order_id=_optional_id("order_id", request.order_id),
        statuses=enum_names(
            "statuses",
            request.statuses,
            common_pb2.TradeStatus,
            "TRADE_STATUS_",
            limits.trade_filter_statuses_max,
        ),
        refund_required_only=request.refund_required_only,
    )


def bounded(field: str, value: int, default: int, maximum: int) -> int:
    """Return a count a request asks for: 0 is the default, above the maximum refused."""
    if value > maximum:
        raise InvalidRequest(PAGE_SIZE_TOO_LARGE, field, f"at most {maximum}")
    return value or default
