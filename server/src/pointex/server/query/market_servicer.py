"""The market reads of QueryService: orders, trades, markets, books, recent trades, stats.

A base class of `QueryServicer`, so that each module stays readable; the conventions are the
same as for the account reads: validate, then wait for `min_position`, then read, then
answer with `as_of`. Listings page newest first by the position of the event that placed
the order (or matched the trade), with signed page tokens bound to the caller and filters.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from typing import Any

import grpc

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.domain.values import Principal
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.auth import current_principal
from pointex.server.grpc_edge.status import InvalidRequest
from pointex.server.query import market_requests as mr
from pointex.server.query import requests
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.market_views import (
    level_message,
    market_message,
    order_message,
    order_quote_reply,
    public_trade_message,
    trade_message,
)
from pointex.server.query.readstore.market_rows import TradeFilter
from pointex.server.query.readstore.port import ReadStore
from pointex.server.query.tokens import (
    CURSOR_INVALID,
    KIND_ORDERS,
    KIND_TRADES,
    TokenCodec,
    filter_digest,
)
from pointex.server.query.views import timestamp
from pointex.v1 import common_pb2, query_service_pb2_grpc
from pointex.v1 import query_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]
_POSITION = struct.Struct(">Q")
# GetMarketStats covers the 24 hours before the server's clock.
_STATS_WINDOW_US = 24 * 3600 * 1_000_000


class MarketQueries(query_service_pb2_grpc.QueryServiceServicer):
    """The market RPCs; `QueryServicer` provides the store, the watch and the tokens."""

    _store: ReadStore
    _watch: CheckpointWatch
    _tokens: TokenCodec

    async def _reached(self, min_position: common_pb2.Position, context: Context) -> int:
        """Wait for `min_position` (bounded by the deadline); return the checkpoint (as_of)."""
        await self._watch.wait_for(requests.min_position(min_position), context.time_remaining())
        return self._watch.position

    def _before(self, token: str, kind: int, caller: Principal, digest: bytes) -> int:
        """Return the position a listing's page token resumes below (0: the newest)."""
        if not token:
            return 0
        key = self._tokens.read_page_token(token, kind, caller, digest)
        if len(key) != _POSITION.size:
            raise InvalidRequest(CURSOR_INVALID, "page_token", "not a page token of this listing")
        return int(_POSITION.unpack(key)[0])

    async def _check_scope(self, caller: Principal, account_id: str, market_id: str) -> None:
        """Check that a listing's account (visible to the caller) and market exist."""
        if account_id:
            found = await self._store.accounts([account_id])
            requests.require_visible(caller, found.get(account_id), account_id)
        if market_id:
            mr.require_market(await self._store.markets(), market_id)

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderResponse:
        """Return one order."""
        order_id = convert.identifier("order_id", request.order_id)
        as_of = await self._reached(request.min_position, context)
        found = await self._store.orders([order_id])
        row = mr.require_order(current_principal(), found.get(order_id), order_id)
        return pb.GetOrderResponse(as_of=position_message(as_of), order=order_message(row))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersResponse:
        """Return one page of orders, newest first."""
        caller = current_principal()
        selected = mr.order_filter(caller, request)
        size = requests.page_size(request.page_size)
        digest = filter_digest(("orders", *dataclasses.astuple(selected)))
        before = self._before(request.page_token, KIND_ORDERS, caller, digest)
        as_of = await self._reached(request.min_position, context)
        await self._check_scope(caller, selected.account_id, selected.market_id)
        found = await self._store.list_orders(selected, before, size + 1)
        next_token = ""
        if len(found) > size:
            found = found[:size]
            key = _POSITION.pack(found[-1].placed_position)
            next_token = self._tokens.page_token(KIND_ORDERS, caller, digest, key)
        return pb.ListOrdersResponse(
            as_of=position_message(as_of),
            orders=[order_message(row) for row in found],
            next_page_token=next_token,
        )

    async def GetTrade(self, request: pb.GetTradeRequest, context: Context) -> pb.GetTradeResponse:
        """Return one trade, with only the caller's side disclosed."""
        caller = current_principal()
        trade_id = convert.identifier("trade_id", request.trade_id)
        as_of = await self._reached(request.min_position, context)
        found = await self._store.trades([trade_id])
        row = mr.require_trade(caller, found.get(trade_id), trade_id)
        return pb.GetTradeResponse(
            as_of=position_message(as_of), trade=trade_message(row, mr.viewer(caller))
        )

    async def ListTrades(
        self, request: pb.ListTradesRequest, context: Context
    ) -> pb.ListTradesResponse:
        """Return one page of trades, newest first, with only the caller's side disclosed."""
        caller = current_principal()
        selected = mr.trade_filter(caller, request)
        size = requests.page_size(request.page_size)
        digest = filter_digest(("trades", *dataclasses.astuple(selected)))
        before = self._before(request.page_token, KIND_TRADES, caller, digest)
        as_of = await self._reached(request.min_position, context)
        await self._check_scope(caller, selected.account_id, selected.market_id)
        if selected.order_id:
            orders = await self._store.orders([selected.order_id])
            mr.require_order(caller, orders.get(selected.order_id), selected.order_id)
        found = await self._store.list_trades(selected, before, size + 1)
        next_token = ""
        if len(found) > size:
            found = found[:size]
            key = _POSITION.pack(found[-1].matched_position)
            next_token = self._tokens.page_token(KIND_TRADES, caller, digest, key)
        view = mr.viewer(caller)
        return pb.ListTradesResponse(
            as_of=position_message(as_of),
            trades=[trade_message(row, view) for row in found],
            next_page_token=next_token,
        )

    async def ListMarkets(
        self, request: pb.ListMarketsRequest, context: Context
    ) -> pb.ListMarketsResponse:
        """Return every configured market."""
        as_of = await self._reached(request.min_position, context)
        markets = [market_message(row) for row in await self._store.markets()]
        return pb.ListMarketsResponse(as_of=position_message(as_of), markets=markets)

    async def QuoteOrder(
        self, request: pb.QuoteOrderRequest, context: Context
    ) -> pb.QuoteOrderResponse:
        """Return the fee an order of an account the caller owns would pay in a market now."""
        caller = current_principal()
        account_id = convert.identifier("account_id", request.account_id)
        market_id = convert.identifier("market_id", request.market_id)
        side = convert.order_side(request.side)
        quantity_points = convert.amount("quantity_points", request.quantity_points)
        limit_price_minor = convert.price("limit_price_minor", request.limit_price_minor)
        as_of = await self._reached(request.min_position, context)
        found = await self._store.accounts([account_id])
        requests.require_visible(caller, found.get(account_id), account_id)
        market = mr.require_market(await self._store.markets(), market_id)
        return order_quote_reply(as_of, market, side, quantity_points, limit_price_minor)

    async def GetOrderBook(
        self, request: pb.GetOrderBookRequest, context: Context
    ) -> pb.GetOrderBookResponse:
        """Return the best price levels of each side of a market's book."""
        market_id = convert.identifier("market_id", request.market_id)
        depth = mr.bounded(
            "depth", request.depth, limits.book_depth_levels_default, limits.book_depth_levels_max
        )
        as_of = await self._reached(request.min_position, context)
        market = mr.require_market(await self._store.markets(), market_id)
        bids = await self._store.price_levels(market_id, "BUY", depth)
        asks = await self._store.price_levels(market_id, "SELL", depth)
        return pb.GetOrderBookResponse(
            as_of=position_message(as_of),
            market_id=market_id,
            currency=market.currency,
            bids=[level_message(row) for row in bids],
            asks=[level_message(row) for row in asks],
        )

    async def ListRecentTrades(
        self, request: pb.ListRecentTradesRequest, context: Context
    ) -> pb.ListRecentTradesResponse:
        """Return a market's latest trades as public data, newest first."""
        market_id = convert.identifier("market_id", request.market_id)
        limit = mr.bounded(
            "limit", request.limit, limits.recent_trades_default, limits.recent_trades_max
        )
        as_of = await self._reached(request.min_position, context)
        market = mr.require_market(await self._store.markets(), market_id)
        found = await self._store.list_trades(TradeFilter(market_id=market_id), 0, limit)
        return pb.ListRecentTradesResponse(
            as_of=position_message(as_of),
            currency=market.currency,
            trades=[public_trade_message(row) for row in found],
        )

    async def GetMarketStats(
        self, request: pb.GetMarketStatsRequest, context: Context
    ) -> pb.GetMarketStatsResponse:
        """Return a market's figures over the last 24 hours (trades not cancelled)."""
        market_id = convert.identifier("market_id", request.market_id)
        as_of = await self._reached(request.min_position, context)
        market = mr.require_market(await self._store.markets(), market_id)
        end_us = time.time_ns() // 1000
        start_us = end_us - _STATS_WINDOW_US
        stats = await self._store.market_stats(market_id, start_us, end_us)
        reply = pb.GetMarketStatsResponse(
            as_of=position_message(as_of),
            market_id=market_id,
            currency=market.currency,
            window_start=timestamp(start_us),
            window_end=timestamp(end_us),
            last_price_minor=stats.last_price_minor,
            open_price_minor=stats.open_price_minor,
            high_price_minor=stats.high_price_minor,
            low_price_minor=stats.low_price_minor,
            volume_points=stats.volume_points,
            volume_minor=stats.volume_minor,
            trade_count=stats.trade_count,
        )
        if stats.last_trade_at_us:
            reply.last_trade_at.CopyFrom(timestamp(stats.last_trade_at_us))
        return reply
