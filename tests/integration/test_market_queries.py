"""The market reads of QueryService over real gRPC, fed through the real projector.

The command side's market is built elsewhere, so these tests start the query servicer in
process on port 0 (with the edge interceptor, tokens and a SQLite read store) and append the
synthetic market log of the projection tests through `Projector.apply_active`, exactly as the
feed subscriber does. Reads then go through a gRPC channel as a partner or an operator.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from pointex.client.positions import encode_global
from pointex.server import limits
from pointex.server.config import CommonConfig
from pointex.server.grpc_edge.auth import TokenTable
from pointex.server.grpc_edge.server import RunningServer, Service, start_server
from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.feed_subscriber import FeedClient, FeedState
from pointex.server.query.notifications import NotificationStreams
from pointex.server.query.projector import Projector
from pointex.server.query.query_servicer import QueryServicer
from pointex.server.query.readstore.factory import open_read_store
from pointex.server.query.rebuild import Rebuilder
from pointex.server.query.tokens import TokenCodec
from pointex.v1 import common_pb2, events_pb2, query_service_pb2, query_service_pb2_grpc
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.test_event_feed import error_reason
from tests.unit.test_market_projections import Scenario, scenario

OPERATOR_TOKEN = "operator-" + secrets.token_hex(16)
ACME_TOKEN = "partner-acme-" + secrets.token_hex(16)
OTHER_TOKEN = "partner-other-" + secrets.token_hex(16)
THIRD_TOKEN = "partner-third-" + secrets.token_hex(16)
CALL_TIMEOUT_S = 10


class Queries:
    """A QueryService stub bound to one token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        """Call through `channel` as the holder of `token`."""
        self.stub = query_service_pb2_grpc.QueryServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def call(self, rpc: str, request: Message, timeout_s: float = CALL_TIMEOUT_S) -> object:
        """Call `rpc` with `request` and this client's token."""
        return await getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=timeout_s)

    async def error(self, rpc: str, request: Message) -> tuple[grpc.StatusCode, str]:
        """Call an RPC that must fail; return its code and ErrorInfo reason."""
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.call(rpc, request)
        return caught.value.code(), error_reason(caught.value)


@dataclass
class Served:
    """An in-process query server, its projector, and clients for each caller."""

    projector: Projector
    operator: Queries
    acme: Queries
    other: Queries
    third: Queries
    target: str = ""  # host:port of the server, for an SDK client

    async def feed(self, events: list[events_pb2.Event]) -> common_pb2.Position:
        """Project `events` as the feed subscriber would; return the last one's position."""
        position = await self.projector.apply_active(events)
        return common_pb2.Position(token=encode_global(position))


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """Serve QueryService on port 0 over a fresh SQLite read store."""
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"operator ops {OPERATOR_TOKEN}\npartner acme {ACME_TOKEN}\n"
        f"partner other {OTHER_TOKEN}\npartner third {THIRD_TOKEN}\n"
    )
    store = open_read_store(f"sqlite:///{tmp_path / 'read.db'}")
    await store.open()
    watch = CheckpointWatch(await store.checkpoint())
    projector = Projector(store, watch)
    codec = TokenCodec(await store.token_secret())
    feed_state = FeedState()
    # Nothing listens there: this server is fed through the projector, not a feed.
    feed = FeedClient("127.0.0.1:9", "unused-feed-token-0000")
    rebuilder = Rebuilder(store, projector, watch, feed, feed_state)
    servicer = QueryServicer(
        store, watch, codec, NotificationStreams(store, watch, codec), rebuilder, feed_state
    )
    service = Service(
        query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
        lambda server: query_service_pb2_grpc.add_QueryServiceServicer_to_server(servicer, server),
    )
    common = CommonConfig(
        listen="127.0.0.1:0",
        auth_tokens_file=tokens,
        tls=None,
        shutdown_grace_s=1,
        log_level="INFO",
        log_format="json",
    )
    running: RunningServer = await start_server(common, [service], TokenTable.from_file(tokens))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Served(
                projector,
                Queries(channel, OPERATOR_TOKEN),
                Queries(channel, ACME_TOKEN),
                Queries(channel, OTHER_TOKEN),
                Queries(channel, THIRD_TOKEN),
                f"127.0.0.1:{running.port}",
            )
    finally:
        watch.close()
        await running.server.stop(0)
        running.stop_watching()
        await feed.close()
        await store.close()


@pytest.fixture
async def story(served: Served) -> tuple[Scenario, common_pb2.Position]:
    """The scenario's whole log, projected in batches of 8; return it and its last position."""
    s = scenario()
    last = common_pb2.Position()
    for start in range(0, len(s.events), 8):
        last = await served.feed(s.events[start : start + 8])
    return s, last


async def test_get_order_shows_quantities_to_its_owner_and_operators(
    served: Served, story: tuple[Scenario, common_pb2.Position]
) -> None:
    """GetOrder at min_position returns the order; another partner gets NOT_OWNER."""
    s, at = story
    request = qpb.GetOrderRequest(order_id=s.orders["sell"], min_position=at)
    for queries in (served.acme, served.operator):
        reply = await queries.call("GetOrder", request)
        assert isinstance(reply, qpb.GetOrderResponse)
        order = reply.order
        assert order.status == common_pb2.ORDER_STATUS_FILLED
        assert (order.quantity_points, order.open_quantity_points) == (60, 0)
        assert (order.filled_quantity_points, order.settled_quantity_points) == (20, 20)
        assert order.cancelled_quantity_points == 40
        assert (order.currency, order.limit_price_minor) == ("CNY", 10)
        assert reply.as_of == at
    assert await served.other.error("GetOrder", request) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )
    ioc = await served.other.call("GetOrder", qpb.GetOrderRequest(order_id=s.orders["ioc"]))
    assert isinstance(ioc, qpb.GetOrderResponse)
    assert ioc.order.cancel_reason == common_pb2.ORDER_CANCEL_REASON_IOC_REMAINDER
    rejected = await served.acme.call("GetOrder", qpb.GetOrderRequest(order_id=s.orders["reject"]))
    assert isinstance(rejected, qpb.GetOrderResponse)
    assert rejected.order.status == common_pb2.ORDER_STATUS_REJECTED


async def test_get_trade_blanks_the_counterparty_and_the_checkout_url(
    served: Served, story: tuple[Scenario, common_pb2.Position]
) -> None:
    """Each partner sees its own side; the checkout URL only the buyer's owner and operators."""
    s, at = story
    request = qpb.GetTradeRequest(trade_id=s.trades["released"], min_position=at)
    views = {}
    for name, queries in (("ops", served.operator), ("acme", served.acme), ("other", served.other)):
        reply = await queries.call("GetTrade", request)
        assert isinstance(reply, qpb.GetTradeResponse)
        views[name] = reply.trade
    ops, seller, buyer = views["ops"], views["acme"], views["other"]
    assert (ops.buyer_account_id, ops.seller_account_id) == (s.buyer, s.seller)
    assert ops.checkout_url
    assert (seller.buyer_account_id, seller.buy_order_id, seller.checkout_url) == ("", "", "")
    assert (seller.seller_account_id, seller.sell_order_id) == (s.seller, s.orders["sell"])
    assert (buyer.seller_account_id, buyer.sell_order_id) == ("", "")
    assert buyer.checkout_url == ops.checkout_url
    assert buyer.status == common_pb2.TRADE_STATUS_CANCELLED
    assert buyer.cancel_reason == common_pb2.TRADE_CANCEL_REASON_PAYMENT_DEADLINE_PASSED
    assert buyer.refund_required
    assert buyer.HasField("cancelled_at")
    assert not buyer.HasField("settled_at")
    assert await served.third.error("GetTrade", request) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )


async def test_list_orders_pages_newest_first_for_a_partner(
    served: Served, story: tuple[Scenario, common_pb2.Position]
) -> None:
    """ListOrders pages with tokens; a partner sees only its own orders; filters apply."""
    s, at = story
    seen: list[str] = []
    token = ""
    while True:
        reply = await served.acme.call(
            "ListOrders", qpb.ListOrdersRequest(min_position=at, page_size=2, page_token=token)
        )
        assert isinstance(reply, qpb.ListOrdersResponse)
        seen += [order.order_id for order in reply.orders]
        token = reply.next_page_token
        if not token:
            break
    assert seen == [s.orders["reject"], s.orders["cancel"], s.orders["sell"]]
    filtered = await served.operator.call(
        "ListOrders",
        qpb.ListOrdersRequest(
            account_id=s.buyer,
            side=common_pb2.ORDER_SIDE_BUY,
            statuses=[common_pb2.ORDER_STATUS_FILLED],
        ),
    )
    assert isinstance(filtered, qpb.ListOrdersResponse)
    assert [o.order_id for o in filtered.orders] == [s.orders["buy2"], s.orders["buy1"]]


async def test_list_orders_and_trades_refuse_what_the_caller_may_not_name(
    served: Served, story: tuple[Scenario, common_pb2.Position]
) -> None:
    """Another partner's account, an unknown market or order, a reused token are refused."""
    s, _ = story
    cases: list[tuple[Queries, str, Message, grpc.StatusCode, str]] = [
        (served.acme, "ListOrders", qpb.ListOrdersRequest(account_id=s.buyer),
         grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
        (served.acme, "ListOrders", qpb.ListOrdersRequest(account_id="acme:nobody"),
         grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"),
        (served.acme, "ListOrders", qpb.ListOrdersRequest(market_id="ZZZ-CNY"),
         grpc.StatusCode.NOT_FOUND, "MARKET_NOT_FOUND"),
        (served.acme, "ListTrades", qpb.ListTradesRequest(order_id=s.orders["buy1"]),
         grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
        (served.acme, "ListTrades", qpb.ListTradesRequest(order_id="nothing"),
         grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND"),
        (served.acme, "ListOrders", qpb.ListOrdersRequest(page_size=1001),
         grpc.StatusCode.INVALID_ARGUMENT, "PAGE_SIZE_TOO_LARGE"),
        (served.acme, "GetOrderBook", qpb.GetOrderBookRequest(market_id=s.market, depth=101),
         grpc.StatusCode.INVALID_ARGUMENT, "PAGE_SIZE_TOO_LARGE"),
        (served.acme, "ListRecentTrades",
         qpb.ListRecentTradesRequest(market_id=s.market, limit=501),
         grpc.StatusCode.INVALID_ARGUMENT, "PAGE_SIZE_TOO_LARGE"),
        (served.acme, "GetOrder", qpb.GetOrderRequest(order_id="bad id!"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
    ]  # fmt: skip
    for queries, rpc, request, code, reason in cases:
        assert await queries.error(rpc, request) == (code, reason), (rpc, request)
    first = await served.acme.call("ListTrades", qpb.ListTradesRequest(page_size=1))
    assert isinstance(first, qpb.ListTradesResponse)
    assert first.next_page_token
    reused = qpb.ListTradesRequest(
        page_size=1, page_token=first.next_page_token, market_id=s.market
    )
    assert await served.acme.error("ListTrades", reused) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURSOR_INVALID",
    )
    stolen = qpb.ListTradesRequest(page_size=1, page_token=first.next_page_token)
    assert await served.other.error("ListTrades", stolen) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )


async def test_list_trades_filters_and_shows_each_partner_its_side(
    served: Served, story: tuple[Scenario, common_pb2.Position]
) -> None:
    """ListTrades filters by order, status and refund; a partner sees only its own side."""
    s, at = story
    reply = await served.acme.call(
        "ListTrades", qpb.ListTradesRequest(min_position=at, order_id=s.orders["sell"])
    )
    assert isinstance(reply, qpb.ListTradesResponse)
    assert [t.trade_id for t in reply.trades] == [
        s.trades["released"],
        s.trades["returned"],
        s.trades["settled"],
    ]
    assert {t.buyer_account_id for t in reply.trades} == {""}
    refunds = await served.other.call(
        "ListTrades", qpb.ListTradesRequest(refund_required_only=True)
    )
    assert isinstance(refunds, qpb.ListTradesResponse)
    assert [t.trade_id for t in refunds.trades] == [s.trades["released"]]
    settled = await served.operator.call(
        "ListTrades", qpb.ListTradesRequest(statuses=[common_pb2.TRADE_STATUS_SETTLED])
    )
    assert isinstance(settled, qpb.ListTradesResponse)
    assert [(t.trade_id, t.seller_account_id) for t in settled.trades] == [
        (s.trades["settled"], s.seller)
    ]
    nothing = await served.third.call("ListTrades", qpb.ListTradesRequest())
    assert isinstance(nothing, qpb.ListTradesResponse)
    assert list(nothing.trades) == []


async def test_market_data_books_recent_trades_stats_and_markets(served: Served) -> None:
    """Every partner sees markets, the aggregated book, recent public trades and statistics."""
    s = scenario()
    first_fill = next(i for i, e in enumerate(s.events) if e.WhichOneof("payload") == "points_sold")
    at = await served.feed(s.events[: first_fill + 1])
    book = await served.third.call(
        "GetOrderBook", qpb.GetOrderBookRequest(market_id=s.market, min_position=at)
    )
    assert isinstance(book, qpb.GetOrderBookResponse)
    assert book.currency == "CNY"
    assert list(book.bids) == []
    assert [(v.price_minor, v.quantity_points, v.order_count) for v in book.asks] == [(10, 30, 1)]
    await served.feed(s.events[first_fill + 1 :])
    markets = await served.third.call("ListMarkets", qpb.ListMarketsRequest())
    assert isinstance(markets, qpb.ListMarketsResponse)
    assert [(m.market_id, m.currency, m.provider_id, m.open) for m in markets.markets] == [
        (s.market, "CNY", "sandbox", True)
    ]
    recent = await served.third.call(
        "ListRecentTrades", qpb.ListRecentTradesRequest(market_id=s.market, limit=2)
    )
    assert isinstance(recent, qpb.ListRecentTradesResponse)
    assert [(t.trade_id, t.status) for t in recent.trades] == [
        (s.trades["released"], common_pb2.TRADE_STATUS_CANCELLED),
        (s.trades["returned"], common_pb2.TRADE_STATUS_CANCELLED),
    ]
    stats = await served.third.call("GetMarketStats", qpb.GetMarketStatsRequest(market_id=s.market))
    assert isinstance(stats, qpb.GetMarketStatsResponse)
    # The synthetic log is dated 2023, outside today's window: only the last price shows.
    assert (stats.last_price_minor, stats.trade_count, stats.volume_points) == (10, 0, 0)
    assert stats.HasField("last_trade_at")
    span = stats.window_end.ToMicroseconds() - stats.window_start.ToMicroseconds()
    assert span == 24 * 3600 * 1_000_000


async def test_check_invariants_counts_escrow_in_flight_and_finds_a_broken_i2(
    served: Served,
) -> None:
    """Mid-settlement, I1 counts the sale in flight and I2 holds; a bad hold is a violation."""
    s = scenario()
    sold_at = next(i for i, e in enumerate(s.events) if e.WhichOneof("payload") == "points_sold")
    at = await served.feed(s.events[: sold_at + 1])
    reply = await served.operator.call(
        "CheckInvariants", qpb.CheckInvariantsRequest(min_position=at)
    )
    assert isinstance(reply, qpb.CheckInvariantsResponse)
    assert reply.ok, reply
    assert (reply.in_flight_points, reply.held_points) == (20, 40)
    assert (reply.open_sell_quantity_points, reply.pending_trade_quantity_points) == (30, 30)
    await served.feed(s.events[sold_at + 1 :])
    done = await served.operator.call("CheckInvariants", qpb.CheckInvariantsRequest())
    assert isinstance(done, qpb.CheckInvariantsResponse)
    assert done.ok, done
    assert done.in_flight_points == 0


async def test_market_notifications_reach_each_owner_with_cursors(
    served: Served, story: tuple[Scenario, common_pb2.Position]
) -> None:
    """WatchNotifications from the beginning gives a partner its market notifications in order."""
    s, at = story
    request = qpb.WatchNotificationsRequest(
        from_beginning=True,
        min_position=at,
        kinds=[qpb.NOTIFICATION_KIND_PAYMENT_REQUIRED, qpb.NOTIFICATION_KIND_REFUND_REQUIRED],
    )
    call = served.other.stub.WatchNotifications(request, metadata=served.other.metadata)
    got: list[qpb.Notification] = []
    async with asyncio.timeout(CALL_TIMEOUT_S):
        async for message in call:
            assert message.HasField("notification"), message
            got.append(message.notification)
            if len(got) == 4:  # Three payments asked for, one refund.
                break
    call.cancel()
    assert [n.kind for n in got] == [
        qpb.NOTIFICATION_KIND_PAYMENT_REQUIRED,
        qpb.NOTIFICATION_KIND_PAYMENT_REQUIRED,
        qpb.NOTIFICATION_KIND_PAYMENT_REQUIRED,
        qpb.NOTIFICATION_KIND_REFUND_REQUIRED,
    ]
    assert {n.account_id for n in got} == {s.buyer}
    assert got[0].payment_required.trade_id == s.trades["settled"]
    assert got[-1].trade.refund_required
    assert len({n.cursor for n in got}) == len(got)


async def test_a_partner_past_its_share_of_streams_is_shed_and_others_watch_on(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two watches admitted for acme, the third shed with RetryInfo; other is not affected."""
    monkeypatch.setattr(limits, "partner_streams_max", 2)
    request = qpb.WatchNotificationsRequest(from_beginning=True)
    reads: list[asyncio.Task[object]] = []

    async def watch(client: Queries) -> str:
        """Open a watch; return "open" while it waits, or the reason it was refused."""
        call = client.stub.WatchNotifications(
            request, metadata=client.metadata, timeout=CALL_TIMEOUT_S
        )
        read: asyncio.Task[object] = asyncio.create_task(call.read())
        reads.append(read)
        done, _ = await asyncio.wait({read}, timeout=0.3)
        if not done:
            return "open"
        error = read.exception()
        assert isinstance(error, grpc.aio.AioRpcError), read
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        return error_reason(error)

    assert [await watch(served.acme), await watch(served.acme)] == ["open", "open"]
    assert await watch(served.acme) == "OVERLOADED"
    assert await watch(served.other) == "open"
    reads[0].cancel()
    await asyncio.sleep(0.1)
    assert await watch(served.acme) == "open"
    for read in reads:
        read.cancel()


async def test_cancelled_watches_give_back_everything_they_held(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 watches opened then cancelled by their clients: 100 new ones fit in the bound again."""
    monkeypatch.setattr(limits, "notification_watchers_max", 100)
    request = qpb.WatchNotificationsRequest(from_beginning=True)

    async def open_all() -> list[asyncio.Task[object]]:
        reads: list[asyncio.Task[object]] = []
        for _ in range(100):
            call = served.operator.stub.WatchNotifications(
                request, metadata=served.operator.metadata, timeout=CALL_TIMEOUT_S
            )
            reads.append(asyncio.create_task(call.read()))
        done, _ = await asyncio.wait(reads, timeout=0.5)
        assert not done, [read.exception() for read in done]  # All open and waiting.
        return reads

    for _ in range(2):
        reads = await open_all()
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        await asyncio.sleep(0.2)  # The server sees the cancellations.
