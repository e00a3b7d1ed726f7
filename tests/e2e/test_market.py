"""The market end to end: command server, query server and sandbox provider as processes.

Orders are placed over gRPC; the sandbox provider is asked for each trade's payment and,
told by the test which outcome the buyer chose (its SettlePayment control), calls the
command server back with a signed callback. The query server's projections must show the
outcome, and CheckInvariants must find I1 and I2 intact. Forged and mismatched callbacks
are refused with their named reasons and change nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from pointex.client.callbacks import sign
from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server.eventstore.port import SLICE_RANGES
from pointex.server.slices import range_of
from pointex.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    common_pb2,
    query_service_pb2,
    query_service_pb2_grpc,
)
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    PROVIDER_TOKEN,
    StartCommandServer,
    StartQueryServer,
    bearer,
    sandbox_provider,
)
from tests.e2e.test_event_feed import error_reason

SECRET = secrets.token_urlsafe(32)
SETTLE_TIMEOUT_S = 30
pb = command_service_pb2


@dataclass
class Market:
    """The three processes and a stub for each side."""

    commands: command_service_pb2_grpc.CommandServiceAsyncStub
    queries: query_service_pb2_grpc.QueryServiceAsyncStub
    sandbox: sandbox_pb2_grpc.SandboxGatewayServiceAsyncStub

    async def command(self, rpc: str, request: object, token: str = ACME_TOKEN) -> object:
        """Call a CommandService RPC as `token`'s holder."""
        return await getattr(self.commands, rpc)(request, metadata=bearer(token), timeout=10)

    async def trade(self, trade_id: str, position: common_pb2.Position) -> common_pb2.Trade:
        """Return a trade as the operator sees it, once projections reached `position`."""
        reply = await self.queries.GetTrade(
            query_service_pb2.GetTradeRequest(min_position=position, trade_id=trade_id),
            metadata=bearer(OPERATOR_TOKEN),
            timeout=10,
        )
        return reply.trade

    async def wait_trade(
        self, trade_id: str, position: common_pb2.Position, *, until: str
    ) -> common_pb2.Trade:
        """Poll a trade until `until` holds ("payment": requested, or a status name)."""
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while True:
                trade = await self.trade(trade_id, position)
                done = (
                    bool(trade.payment_id)
                    if until == "payment"
                    else common_pb2.TradeStatus.Name(trade.status) == until
                )
                if done:
                    return trade
                await asyncio.sleep(0.05)

    async def account(self, account_id: str) -> common_pb2.Account:
        """Return an account as its owner sees it now."""
        reply = await self.queries.GetAccount(
            query_service_pb2.GetAccountRequest(account_id=account_id),
            metadata=bearer(ACME_TOKEN),
            timeout=10,
        )
        return reply.account


@pytest.fixture
async def market(
    tmp_path: Path,
    store_url: str,
    unused_tcp_port: int,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> AsyncIterator[Market]:
    """Start the sandbox, then the command server it calls back, then the query server."""
    command_target = f"127.0.0.1:{unused_tcp_port}"
    # A delay longer than the test: every payment settles when the test says so.
    async with sandbox_provider(
        tmp_path, command_target, SECRET, POINTEX_PAYMENT_DELAY_MS="600000"
    ) as (sandbox, providers):
        command = await start_command_server(
            store_url,
            extra_env={
                "POINTEX_LISTEN": command_target,
                "POINTEX_PAYMENT_PROVIDERS_FILE": str(providers),
            },
        )
        query = await start_query_server(command.target)
        async with (
            grpc.aio.insecure_channel(command.target) as commands,
            grpc.aio.insecure_channel(query.target) as queries,
            grpc.aio.insecure_channel(sandbox.target) as gateway,
        ):
            yield Market(
                command_service_pb2_grpc.CommandServiceStub(commands),
                query_service_pb2_grpc.QueryServiceStub(queries),
                sandbox_pb2_grpc.SandboxGatewayServiceStub(gateway),
            )


def _low_half(stream_id: str) -> bool:
    return range_of(stream_id) < SLICE_RANGES // 2


def _away_from_market(who: str) -> str:
    """Return a new account id in the other half of the slice ranges than the market's."""
    while True:
        account_id = f"{who}-{uuid.uuid4().hex[:8]}"
        if _low_half(f"account-{account_id}") != _low_half("market-PTS-CNY"):
            return account_id


async def _traders(market: Market, *, away: bool = False) -> tuple[str, str]:
    """Open a funded seller and an empty buyer (acme's members).

    `away`: their accounts lie in the other half of the slice ranges than the market, so
    that servers splitting the ranges in halves own them apart from the market.
    """
    merchant, seller, buyer = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("m", "s", "b"))
    if away:
        seller, buyer = _away_from_market("s"), _away_from_market("b")
    for account_id, kind in (
        (merchant, common_pb2.ACCOUNT_KIND_MERCHANT),
        (seller, common_pb2.ACCOUNT_KIND_MEMBER),
        (buyer, common_pb2.ACCOUNT_KIND_MEMBER),
    ):
        await market.command(
            "OpenAccount",
            pb.OpenAccountRequest(request_id=uuid.uuid4().hex, account_id=account_id, kind=kind),
        )
    mint = pb.MintPointsRequest(
        request_id=uuid.uuid4().hex, merchant_account_id=merchant, amount_points=100
    )
    await market.command("MintPoints", mint, OPERATOR_TOKEN)
    issue = pb.IssuePointsRequest(
        request_id=uuid.uuid4().hex,
        merchant_account_id=merchant,
        member_account_id=seller,
        amount_points=100,
    )
    await market.command("IssuePoints", issue)
    return seller, buyer


async def _order(  # noqa: PLR0917 - an order's terms.
    market: Market, account_id: str, side: int, quantity: int, price: int, tif: int = 1
) -> pb.PlaceOrderResponse:
    request = pb.PlaceOrderRequest(
        request_id=uuid.uuid4().hex,
        account_id=account_id,
        market_id="PTS-CNY",
        side=side,  # type: ignore[arg-type]
        quantity_points=quantity,
        limit_price_minor=price,
        time_in_force=tif,  # type: ignore[arg-type]
    )
    reply: pb.PlaceOrderResponse = await market.command("PlaceOrder", request)  # type: ignore[assignment]
    return reply


async def _settle(market: Market, payment_id: str, outcome: int) -> None:
    await market.sandbox.SettlePayment(
        sandbox_pb2.SettlePaymentRequest(
            payment_id=payment_id,
            outcome=outcome,  # type: ignore[arg-type]
            wait_for_delivery=True,
        ),
        timeout=SETTLE_TIMEOUT_S,
    )


async def test_orders_match_and_sandbox_payments_settle_or_cancel(market: Market) -> None:
    """A paid trade settles, a failed one returns its quantity; reads and invariants agree."""
    seller, buyer = await _traders(market)
    await _order(market, seller, common_pb2.ORDER_SIDE_SELL, 10, 100)
    paid = (await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 4, 100)).trades[0]
    failing = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 3, 100)
    unpaid = failing.trades[0]
    trade = await market.wait_trade(paid.trade_id, failing.position, until="payment")
    await _settle(market, trade.payment_id, sandbox_pb2.OUTCOME_CONFIRMED)
    other = await market.wait_trade(unpaid.trade_id, failing.position, until="payment")
    await _settle(market, other.payment_id, sandbox_pb2.OUTCOME_FAILED)
    settled = await market.wait_trade(paid.trade_id, failing.position, until="TRADE_STATUS_SETTLED")
    assert settled.amount_due_minor == 400
    await market.wait_trade(unpaid.trade_id, failing.position, until="TRADE_STATUS_CANCELLED")
    seller_account = await market.account(seller)
    assert (seller_account.available_points, seller_account.held_points) == (90, 6)
    assert (await market.account(buyer)).available_points == 4
    checked = await market.queries.CheckInvariants(
        query_service_pb2.CheckInvariantsRequest(), metadata=bearer(OPERATOR_TOKEN), timeout=10
    )
    assert not checked.violations, checked
    await _book_and_notifications_agree(market, buyer, paid.trade_id, unpaid.trade_id)


async def test_traders_away_from_the_market_trade_and_cancel(market: Market) -> None:
    """Seller and buyer in the other half of the slice ranges than the market: all happens once.

    With the ranges split across servers (POINTEX_TEST_CLUSTER=split), the orders are held
    and released by their accounts' owner and placed by the market's, the trades' steps on
    the accounts are taken by their owner, and a cancellation's release goes there too.
    """
    seller, buyer = await _traders(market, away=True)
    sell = await _order(market, seller, common_pb2.ORDER_SIDE_SELL, 10, 100)
    paid = (await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 4, 100)).trades[0]
    failing = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 3, 100)
    unpaid = failing.trades[0]
    nothing = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 5, 50, tif=2)  # IOC
    assert not nothing.trades
    assert nothing.order.cancelled_quantity_points == 5
    trade = await market.wait_trade(paid.trade_id, nothing.position, until="payment")
    await _settle(market, trade.payment_id, sandbox_pb2.OUTCOME_CONFIRMED)
    other = await market.wait_trade(unpaid.trade_id, nothing.position, until="payment")
    await _settle(market, other.payment_id, sandbox_pb2.OUTCOME_FAILED)
    await market.wait_trade(paid.trade_id, nothing.position, until="TRADE_STATUS_SETTLED")
    await market.wait_trade(unpaid.trade_id, nothing.position, until="TRADE_STATUS_CANCELLED")
    cancel = pb.CancelOrderRequest(
        request_id=uuid.uuid4().hex, market_id="PTS-CNY", order_id=sell.order.order_id
    )
    cancelled = await market.command("CancelOrder", cancel)
    assert isinstance(cancelled, pb.CancelOrderResponse)
    assert cancelled.cancelled_quantity_points == 6  # 3 returned by the failed trade
    again = await market.command("CancelOrder", cancel)
    assert isinstance(again, pb.CancelOrderResponse)
    assert again.cancelled_quantity_points == 6
    checked = await market.queries.CheckInvariants(
        query_service_pb2.CheckInvariantsRequest(min_position=cancelled.position),
        metadata=bearer(OPERATOR_TOKEN),
        timeout=10,
    )
    assert not checked.violations, checked
    seller_account = await market.account(seller)
    assert (seller_account.available_points, seller_account.held_points) == (96, 0)
    assert (await market.account(buyer)).available_points == 4


async def _book_and_notifications_agree(
    market: Market, buyer: str, paid_id: str, unpaid_id: str
) -> None:
    """The book rests 6 (3 returned by the failed trade); the buyer was told everything."""
    book = await market.queries.GetOrderBook(
        query_service_pb2.GetOrderBookRequest(market_id="PTS-CNY"),
        metadata=bearer(ACME_TOKEN),
        timeout=10,
    )
    asks = [(level.price_minor, level.quantity_points) for level in book.asks]
    assert (100, 6) in asks, asks
    recent = await market.queries.ListRecentTrades(
        query_service_pb2.ListRecentTradesRequest(market_id="PTS-CNY"),
        metadata=bearer(ACME_TOKEN),
        timeout=10,
    )
    statuses = {trade.trade_id: trade.status for trade in recent.trades}
    assert statuses[paid_id] == common_pb2.TRADE_STATUS_SETTLED
    assert statuses[unpaid_id] == common_pb2.TRADE_STATUS_CANCELLED
    kinds: set[int] = set()
    watch = market.queries.WatchNotifications(
        query_service_pb2.WatchNotificationsRequest(from_beginning=True, account_ids=[buyer]),
        metadata=bearer(ACME_TOKEN),
        timeout=10,
    )
    wanted = {
        query_service_pb2.NOTIFICATION_KIND_PAYMENT_REQUIRED,
        query_service_pb2.NOTIFICATION_KIND_TRADE_SETTLED,
        query_service_pb2.NOTIFICATION_KIND_TRADE_CANCELLED,
    }
    async for message in watch:
        if message.HasField("notification"):
            kinds.add(message.notification.kind)
        if wanted <= kinds:
            watch.cancel()
            break
    assert wanted <= kinds, kinds


def _callback(trade: common_pb2.Trade, **changes: object) -> pb.PaymentCallback:
    callback = pb.PaymentCallback(
        provider_id="sandbox",
        payment_id=trade.payment_id,
        trade_id=trade.trade_id,
        outcome=common_pb2.PAYMENT_OUTCOME_CONFIRMED,
        amount=common_pb2.Money(amount_minor=trade.amount_due_minor, currency=trade.currency),
        provider_event_id=f"evt-{uuid.uuid4().hex}",
        signed_at=Timestamp(seconds=int(time.time())),
        key_id="k1",
    )
    for name, value in changes.items():
        if name == "amount_minor":
            callback.amount.amount_minor = value  # type: ignore[assignment]
        else:
            setattr(callback, name, value)
    callback.signature = sign(callback, SECRET.encode())
    return callback


async def test_forged_replayed_and_wrong_amount_callbacks_are_refused(market: Market) -> None:
    """A bad signature, another trade's payment and a wrong amount: refused, nothing changes."""
    seller, buyer = await _traders(market)
    await _order(market, seller, common_pb2.ORDER_SIDE_SELL, 10, 100)
    first = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 2, 100)
    second = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 2, 100)
    trade_a = await market.wait_trade(first.trades[0].trade_id, second.position, until="payment")
    trade_b = await market.wait_trade(second.trades[0].trade_id, second.position, until="payment")
    forged = _callback(trade_a)
    forged.signature = bytes(32)
    other_trade = _callback(trade_a, trade_id=trade_b.trade_id)
    wrong_amount = _callback(trade_a, amount_minor=trade_a.amount_due_minor - 1)
    for callback, reason in (
        (forged, "SIGNATURE_INVALID"),
        (other_trade, "TRADE_MISMATCH"),
        (wrong_amount, "AMOUNT_MISMATCH"),
    ):
        request = pb.ConfirmPaymentRequest(request_id=uuid.uuid4().hex, callback=callback)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await market.command("ConfirmPayment", request, PROVIDER_TOKEN)
        assert error_reason(refused.value) == reason
    still = await market.trade(trade_a.trade_id, second.position)
    assert still.status == common_pb2.TRADE_STATUS_PENDING_PAYMENT
    assert (await market.account(buyer)).available_points == 0
