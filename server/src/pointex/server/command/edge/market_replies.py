"""Replies of the market commands: orders and trades as the command side knows them.

The command side knows an order as its market's book does: its open quantity, what left
the book unmatched, and (the rest) what was matched. The query side has the full view,
including what later happened to each trade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from pointex.server import limits
from pointex.server.command.app.idempotency import Request
from pointex.server.command.app.market_handlers import MarketHandlers
from pointex.server.command.edge.replies import ProtoReplies, payload_digest
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.market_events import TradeCreated
from pointex.server.domain.order_book import BookOrder, copy_order
from pointex.server.domain.values import Instant, Market, OrderSide, TimeInForce
from pointex.server.grpc_edge import convert
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

_SIDES = {
    OrderSide.BUY: common_pb2.ORDER_SIDE_BUY,
    OrderSide.SELL: common_pb2.ORDER_SIDE_SELL,
}
_TIF = {
    TimeInForce.GTC: common_pb2.TIME_IN_FORCE_GTC,
    TimeInForce.IOC: common_pb2.TIME_IN_FORCE_IOC,
}


def side_to_proto(side: OrderSide) -> common_pb2.OrderSide.ValueType:
    """Return the wire value of a side."""
    return _SIDES[side]


def timestamp(instant: Instant) -> Timestamp:
    """Return an instant as a protobuf Timestamp."""
    return Timestamp(seconds=instant.unix_ms // 1000, nanos=instant.unix_ms % 1000 * 1_000_000)


def order_message(
    order: BookOrder,
    market_id: str,
    currency: str,
    *,
    changed_at: Instant,
    cancel_reason: common_pb2.OrderCancelReason.ValueType = (
        common_pb2.ORDER_CANCEL_REASON_UNSPECIFIED
    ),
) -> common_pb2.Order:
    """Return the order as its book sees it at `changed_at` (server clock)."""
    filled = order.quantity_points - order.open_quantity_points - order.cancelled_quantity_points
    if order.resting:
        status = (
            common_pb2.ORDER_STATUS_OPEN
            if filled == 0
            else (common_pb2.ORDER_STATUS_PARTIALLY_FILLED)
        )
    elif order.cancelled_quantity_points:
        status = common_pb2.ORDER_STATUS_CANCELLED
    else:
        status = common_pb2.ORDER_STATUS_FILLED
    return common_pb2.Order(
        order_id=order.order_id,
        market_id=market_id,
        account_id=order.account_id,
        side=_SIDES[order.side],
        time_in_force=_TIF[order.time_in_force],
        status=status,
        quantity_points=order.quantity_points,
        limit_price_minor=order.limit_price_minor,
        currency=currency,
        open_quantity_points=order.open_quantity_points,
        filled_quantity_points=filled,
        cancelled_quantity_points=order.cancelled_quantity_points,
        client_order_id=order.client_order_id,
        cancel_reason=cancel_reason,
        updated_at=timestamp(changed_at),
    )


def trade_message(created: TradeCreated, matched_at: Instant) -> common_pb2.Trade:
    """Return a just-matched trade, PENDING_PAYMENT."""
    return common_pb2.Trade(
        trade_id=created.trade_id,
        market_id=created.market_id,
        status=common_pb2.TRADE_STATUS_PENDING_PAYMENT,
        buy_order_id=created.buy_order_id,
        sell_order_id=created.sell_order_id,
        buyer_account_id=created.buyer_account_id,
        seller_account_id=created.seller_account_id,
        maker_side=_SIDES[created.maker_side],
        quantity_points=created.quantity_points,
        price_minor=created.price_minor,
        currency=created.currency,
        notional_minor=created.notional_minor,
        buyer_fee_minor=created.buyer_fee_minor,
        seller_fee_minor=created.seller_fee_minor,
        amount_due_minor=created.amount_due_minor,
        seller_proceeds_minor=created.seller_proceeds_minor,
        payment_deadline=timestamp(created.payment_deadline),
        matched_at=timestamp(matched_at),
    )


def tif_to_proto(time_in_force: TimeInForce) -> common_pb2.TimeInForce.ValueType:
    """Return the wire value of a time in force."""
    return _TIF[time_in_force]


def place_request_of(order: PlaceOrder) -> pb.PlaceOrderRequest:
    """Return the request that places `order` (without its request id), for its digest."""
    request = pb.PlaceOrderRequest(
        account_id=order.account_id,
        market_id=order.market_id,
        side=side_to_proto(order.side),
        quantity_points=order.quantity_points,
        limit_price_minor=order.limit_price_minor,
        time_in_force=tif_to_proto(order.time_in_force),
        client_order_id=order.client_order_id,
    )
    if order.fee_quote is not None:  # Set as the client set it, so the digests agree.
        request.fee_quote.fee_minor = order.fee_quote.fee_minor
        request.fee_quote.schedule_version = order.fee_quote.schedule_version
    return request


def order_of(request: pb.PlaceOrderRequest, order_id: str) -> PlaceOrder:
    """Return the order a PlaceOrder request places, under `order_id`; InvalidRequest if bad."""
    return PlaceOrder(
        order_id,
        convert.identifier("account_id", request.account_id),
        convert.identifier("market_id", request.market_id),
        convert.order_side(request.side),
        convert.amount("quantity_points", request.quantity_points),
        convert.price("limit_price_minor", request.limit_price_minor),
        convert.time_in_force(request.time_in_force),
        convert.optional_identifier("client_order_id", request.client_order_id),
        (
            convert.order_fee_quote("fee_quote", request.fee_quote)
            if request.HasField("fee_quote")
            else None
        ),
    )


def placement_digest(order: PlaceOrder) -> bytes:
    """Return the payload digest of the request that places `order` (for its record)."""
    return payload_digest(place_request_of(order))


_PLACE = ProtoReplies(pb.PlaceOrderResponse)
_CANCEL = ProtoReplies(pb.CancelOrderResponse)


@dataclass(frozen=True, slots=True)
class ProtoMarketReplies:
    """PlaceOrderResponse and CancelOrderResponse, built from what the book decided."""

    place: ProtoReplies[pb.PlaceOrderResponse] = _PLACE
    cancel: ProtoReplies[pb.CancelOrderResponse] = _CANCEL

    def placed(
        self, order: BookOrder, market: Market, trades: Sequence[TradeCreated], at: Instant
    ) -> pb.PlaceOrderResponse:
        """Return the reply to a placement: the order after matching, its first trades."""
        response = pb.PlaceOrderResponse(
            order=order_message(
                copy_order(order), market.market_id, market.currency, changed_at=at
            ),
            trades=[trade_message(c, at) for c in trades[: limits.trades_per_order_max]],
            trade_count=len(trades),
        )
        response.order.placed_at.CopyFrom(response.order.updated_at)
        if order.cancelled_quantity_points:
            response.order.cancel_reason = common_pb2.ORDER_CANCEL_REASON_IOC_REMAINDER
        return response

    def cancelled(
        self,
        order: BookOrder,
        market: Market,
        at: Instant,
        *,
        cancelled_points: int,
        released_points: int,
    ) -> pb.CancelOrderResponse:
        """Return the reply to a cancellation."""
        return pb.CancelOrderResponse(
            order=order_message(
                copy_order(order),
                market.market_id,
                market.currency,
                changed_at=at,
                cancel_reason=common_pb2.ORDER_CANCEL_REASON_REQUESTED,
            ),
            cancelled_quantity_points=cancelled_points,
            released_points=released_points,
        )

    def placing(self, order: PlaceOrder) -> Request:
        """Return the request that places `order`, without its id (for recovery's record)."""
        return Request("", "PlaceOrder", placement_digest(order))

    def placement_outcome(self, reply: pb.PlaceOrderResponse) -> tuple[list[str], int]:
        """Return the trades a placement's reply names and its IOC remainder."""
        # A placement creates at most trades_per_order_max trades: the reply lists them all.
        assert len(reply.trades) == reply.trade_count, reply.trade_count
        return [trade.trade_id for trade in reply.trades], reply.order.cancelled_quantity_points

    def cancelled_points(self, reply: pb.CancelOrderResponse) -> int:
        """Return the open quantity a cancellation's reply says it took out of the book."""
        return reply.cancelled_quantity_points


MARKET_REPLIES = ProtoMarketReplies()
# The market's application layer as this edge serves it.
ProtoMarketHandlers = MarketHandlers[pb.PlaceOrderResponse, pb.CancelOrderResponse]
