"""Tenancy on every RPC, table-driven: another tenant's objects are refused and nothing changes.

The table has one row per RPC of CommandService, QueryService and EventFeed, enumerated from
the service descriptors: an RPC added without a row fails the first test. Partner `acme` owns
a merchant, a member, a resting SELL order and a trade waiting for its payment; partner
`other` then names them in every call. Each row says what `other` gets:

- PERMISSION_DENIED / NOT_OWNER for an object `other` names that belongs to `acme`. Account,
  order and trade ids are not secrets (a partner sends points to any account, and a trade
  names both parties), so saying that the object exists leaks nothing a partner could not
  learn anyway, and the caller learns exactly why it was refused;
- PERMISSION_DENIED / ROLE_FORBIDDEN for an RPC its role may not call at all (operator-only,
  payment callbacks, the EventFeed of the query server);
- OK for public market data, whose replies carry no account or order id (checked).

After each refused call the command server's event log holds exactly what it held before.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp

from pointex.server.domain.values import Role
from pointex.server.grpc_edge.auth import METHOD_ROLES
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2, event_feed_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.chaos.rpcs import ALL_RPCS, COMMAND_RPCS, Outcome, Rpc, call_raw, logged_events
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    OTHER_TOKEN,
    PROVIDER_TOKEN,
    QUERY_TOKEN,
    Stack,
    bearer,
)

DENIED = (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
FORBIDDEN = (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN")
PUBLIC = (grpc.StatusCode.OK, "")
MARKET = "PTS-CNY"


@pytest.fixture
def payment_delay_ms() -> int:
    """The sandbox does not pay during the test: acme's trade stays PENDING_PAYMENT."""
    return 600_000


def rid() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Acme:
    """Acme's objects, and one account of `other`'s to send to."""

    merchant: str
    member: str
    order_id: str
    trade_id: str
    payment_id: str
    other_member: str
    amount_due_minor: int
    issue_id: str  # The transfer id of acme's issue to its member.


Row = tuple[Callable[[Acme], Message], tuple[grpc.StatusCode, str]]


def _callback(acme: Acme, *, confirmed: bool = False) -> pb.PaymentCallback:
    return pb.PaymentCallback(
        provider_id="sandbox",
        payment_id=acme.payment_id,
        trade_id=acme.trade_id,
        outcome=(
            common_pb2.PAYMENT_OUTCOME_CONFIRMED if confirmed else common_pb2.PAYMENT_OUTCOME_FAILED
        ),
        amount=common_pb2.Money(amount_minor=acme.amount_due_minor, currency="CNY"),
        provider_event_id=rid(),
        key_id="k1",
        signature=b"\x00" * 32,
        signed_at=Timestamp(seconds=int(time.time())),
    )


def _bulk(acme: Acme) -> pb.ExecuteBulkRequest:
    transfer = pb.TransferPointsRequest(
        request_id=rid(),
        from_account_id=acme.member,
        to_account_id=acme.other_member,
        amount_points=1,
    )
    return pb.ExecuteBulkRequest(commands=[pb.BulkCommand(transfer_points=transfer)])


# What `other` sends, per RPC, and what it must get.
ROWS: dict[str, Row] = {
    "/pointex.v1.CommandService/OpenAccount": (
        lambda _: pb.OpenAccountRequest(
            request_id=rid(),
            account_id=f"x-{rid()[:8]}",
            kind=common_pb2.ACCOUNT_KIND_MEMBER,
            owner_partner_id="acme",
        ),
        (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
    ),
    "/pointex.v1.CommandService/MintPoints": (
        lambda a: pb.MintPointsRequest(
            request_id=rid(), merchant_account_id=a.merchant, amount_points=5
        ),
        FORBIDDEN,
    ),
    "/pointex.v1.CommandService/IssuePoints": (
        lambda a: pb.IssuePointsRequest(
            request_id=rid(),
            merchant_account_id=a.merchant,
            member_account_id=a.other_member,
            amount_points=5,
        ),
        DENIED,
    ),
    "/pointex.v1.CommandService/RedeemPoints": (
        lambda a: pb.RedeemPointsRequest(
            request_id=rid(),
            member_account_id=a.member,
            merchant_account_id=a.merchant,
            amount_points=5,
        ),
        DENIED,
    ),
    "/pointex.v1.CommandService/TransferPoints": (
        lambda a: pb.TransferPointsRequest(
            request_id=rid(),
            from_account_id=a.member,
            to_account_id=a.other_member,
            amount_points=5,
        ),
        DENIED,
    ),
    "/pointex.v1.CommandService/BurnPoints": (
        lambda a: pb.BurnPointsRequest(
            request_id=rid(), merchant_account_id=a.merchant, amount_points=5
        ),
        FORBIDDEN,
    ),
    "/pointex.v1.CommandService/FreezeAccount": (
        lambda a: pb.FreezeAccountRequest(request_id=rid(), account_id=a.member),
        DENIED,
    ),
    "/pointex.v1.CommandService/UnfreezeAccount": (
        lambda a: pb.UnfreezeAccountRequest(request_id=rid(), account_id=a.member),
        DENIED,
    ),
    "/pointex.v1.CommandService/CloseAccount": (
        lambda a: pb.CloseAccountRequest(request_id=rid(), account_id=a.member),
        DENIED,
    ),
    "/pointex.v1.CommandService/PlaceOrder": (
        lambda a: pb.PlaceOrderRequest(
            request_id=rid(),
            account_id=a.merchant,
            market_id=MARKET,
            side=common_pb2.ORDER_SIDE_SELL,
            quantity_points=1,
            limit_price_minor=1,
            time_in_force=common_pb2.TIME_IN_FORCE_GTC,
        ),
        DENIED,
    ),
    "/pointex.v1.CommandService/CancelOrder": (
        lambda a: pb.CancelOrderRequest(request_id=rid(), market_id=MARKET, order_id=a.order_id),
        DENIED,
    ),
    "/pointex.v1.CommandService/ConfirmPayment": (
        lambda a: pb.ConfirmPaymentRequest(request_id=rid(), callback=_callback(a, confirmed=True)),
        FORBIDDEN,
    ),
    "/pointex.v1.CommandService/FailPayment": (
        lambda a: pb.FailPaymentRequest(request_id=rid(), callback=_callback(a)),
        FORBIDDEN,
    ),
    # The batch is accepted; its one command is refused (checked in the reply below).
    "/pointex.v1.CommandService/ExecuteBulk": (_bulk, DENIED),
    # A transfer id is no secret: reversing one needs the merchant's partner (NOT_OWNER).
    "/pointex.v1.CommandService/ReverseIssue": (
        lambda a: pb.ReverseIssueRequest(request_id=rid(), transfer_id=a.issue_id, amount_points=5),
        DENIED,
    ),
    "/pointex.v1.CommandService/ReverseRedeem": (
        lambda a: pb.ReverseRedeemRequest(
            request_id=rid(), transfer_id=a.issue_id, amount_points=5
        ),
        DENIED,
    ),
    "/pointex.v1.CommandService/SetAccountTier": (
        lambda a: pb.SetAccountTierRequest(request_id=rid(), account_id=a.member, tier="gold"),
        DENIED,
    ),
    # A trade id is no secret either: refunding one needs the buyer's partner (NOT_OWNER).
    "/pointex.v1.CommandService/RefundPurchase": (
        lambda a: pb.RefundPurchaseRequest(request_id=rid(), trade_id=a.trade_id),
        DENIED,
    ),
    # The rules are the operator's: no partner sets them, whatever they name.
    "/pointex.v1.CommandService/SetProgramRules": (
        lambda _: pb.SetProgramRulesRequest(request_id=rid(), rules=common_pb2.ProgramRules()),
        FORBIDDEN,
    ),
    # Who owns which slice ranges is the operator's to see.
    "/pointex.v1.CommandService/ListSliceLeases": (
        lambda _: pb.ListSliceLeasesRequest(),
        FORBIDDEN,
    ),
    "/pointex.v1.EventFeed/Subscribe": (
        lambda _: event_feed_pb2.SubscribeRequest(),
        FORBIDDEN,
    ),
    "/pointex.v1.QueryService/GetAccount": (
        lambda a: qpb.GetAccountRequest(account_id=a.member),
        DENIED,
    ),
    "/pointex.v1.QueryService/ListAccounts": (
        lambda _: qpb.ListAccountsRequest(owner_partner_id="acme"),
        DENIED,
    ),
    "/pointex.v1.QueryService/GetAccountHistory": (
        lambda a: qpb.GetAccountHistoryRequest(account_id=a.member),
        DENIED,
    ),
    "/pointex.v1.QueryService/GetOrder": (
        lambda a: qpb.GetOrderRequest(order_id=a.order_id),
        DENIED,
    ),
    "/pointex.v1.QueryService/ListOrders": (
        lambda a: qpb.ListOrdersRequest(account_id=a.merchant),
        DENIED,
    ),
    "/pointex.v1.QueryService/GetTrade": (
        lambda a: qpb.GetTradeRequest(trade_id=a.trade_id),
        DENIED,
    ),
    "/pointex.v1.QueryService/ListTrades": (
        lambda a: qpb.ListTradesRequest(account_id=a.member),
        DENIED,
    ),
    "/pointex.v1.QueryService/ListMarkets": (lambda _: qpb.ListMarketsRequest(), PUBLIC),
    "/pointex.v1.QueryService/GetOrderBook": (
        lambda _: qpb.GetOrderBookRequest(market_id=MARKET),
        PUBLIC,
    ),
    "/pointex.v1.QueryService/ListRecentTrades": (
        lambda _: qpb.ListRecentTradesRequest(market_id=MARKET),
        PUBLIC,
    ),
    "/pointex.v1.QueryService/GetMarketStats": (
        lambda _: qpb.GetMarketStatsRequest(market_id=MARKET),
        PUBLIC,
    ),
    "/pointex.v1.QueryService/WatchNotifications": (
        lambda a: qpb.WatchNotificationsRequest(account_ids=[a.member], from_beginning=True),
        DENIED,
    ),
    # The program's rules bind every partner's accounts alike: each may read them.
    "/pointex.v1.QueryService/GetProgramRules": (
        lambda _: qpb.GetProgramRulesRequest(),
        PUBLIC,
    ),
    # A quote is read off the source account, which only its partner (or an operator) may.
    "/pointex.v1.QueryService/QuoteTransfer": (
        lambda a: qpb.QuoteTransferRequest(from_account_id=a.member, amount_points=5),
        DENIED,
    ),
    # So is an order's quote: the market is public, the account it would trade for is not.
    "/pointex.v1.QueryService/QuoteOrder": (
        lambda a: qpb.QuoteOrderRequest(
            account_id=a.member,
            market_id=MARKET,
            side=common_pb2.ORDER_SIDE_BUY,
            quantity_points=5,
            limit_price_minor=100,
        ),
        DENIED,
    ),
    "/pointex.v1.QueryService/CheckInvariants": (
        lambda _: qpb.CheckInvariantsRequest(),
        FORBIDDEN,
    ),
    "/pointex.v1.QueryService/RebuildProjections": (
        lambda _: qpb.RebuildProjectionsRequest(compare_only=True),
        FORBIDDEN,
    ),
    "/pointex.v1.QueryService/GetProjectionStatus": (
        lambda _: qpb.GetProjectionStatusRequest(),
        FORBIDDEN,
    ),
}


def test_every_rpc_has_a_row() -> None:
    """An RPC added to a service without a tenancy row fails here."""
    assert set(ROWS) == {rpc.path for rpc in ALL_RPCS}


@pytest.fixture
async def channels(stack: Stack) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel]]:
    """Channels to the stack's command and query servers."""
    async with (
        grpc.aio.insecure_channel(stack.command.target) as command,
        grpc.aio.insecure_channel(stack.query.target) as query,
    ):
        yield command, query


async def _unary(channel: grpc.aio.Channel, path: str, request: Message, token: str) -> Message:
    method = channel.unary_unary(path, None, None)
    reply: bytes = await method(request.SerializeToString(), metadata=bearer(token), timeout=10)
    return _reply_type(path).FromString(reply)


def _reply_type(path: str) -> type[Message]:
    rpc = next(r for r in ALL_RPCS if r.path == path)
    service = rpc.request.file.services_by_name[rpc.service.rsplit(".", 1)[-1]]
    return GetMessageClass(service.methods_by_name[rpc.name].output_type)


async def _acme(command: grpc.aio.Channel, query: grpc.aio.Channel) -> Acme:
    """Open acme's accounts, a resting SELL order and a trade waiting for its payment."""
    tag = uuid.uuid4().hex[:8]
    merchant, member, other_member = f"acme-m-{tag}", f"acme-u-{tag}", f"other-u-{tag}"
    cmd = "/pointex.v1.CommandService/"
    for account, kind, token in (
        (merchant, common_pb2.ACCOUNT_KIND_MERCHANT, ACME_TOKEN),
        (member, common_pb2.ACCOUNT_KIND_MEMBER, ACME_TOKEN),
        (other_member, common_pb2.ACCOUNT_KIND_MEMBER, OTHER_TOKEN),
    ):
        opened = pb.OpenAccountRequest(request_id=rid(), account_id=account, kind=kind)
        await _unary(command, cmd + "OpenAccount", opened, token)
    mint = pb.MintPointsRequest(request_id=rid(), merchant_account_id=merchant, amount_points=500)
    await _unary(command, cmd + "MintPoints", mint, OPERATOR_TOKEN)
    issue = pb.IssuePointsRequest(
        request_id=rid(), merchant_account_id=merchant, member_account_id=member, amount_points=50
    )
    issued = await _unary(command, cmd + "IssuePoints", issue, ACME_TOKEN)
    assert isinstance(issued, pb.IssuePointsResponse)
    sell = pb.PlaceOrderRequest(
        request_id=rid(),
        account_id=merchant,
        market_id=MARKET,
        side=common_pb2.ORDER_SIDE_SELL,
        quantity_points=10,
        limit_price_minor=100,
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
    )
    placed = await _unary(command, cmd + "PlaceOrder", sell, ACME_TOKEN)
    assert isinstance(placed, pb.PlaceOrderResponse)
    buy = pb.PlaceOrderRequest(
        request_id=rid(),
        account_id=member,
        market_id=MARKET,
        side=common_pb2.ORDER_SIDE_BUY,
        quantity_points=4,
        limit_price_minor=100,
        time_in_force=common_pb2.TIME_IN_FORCE_IOC,
    )
    bought = await _unary(command, cmd + "PlaceOrder", buy, ACME_TOKEN)
    assert isinstance(bought, pb.PlaceOrderResponse)
    trade_id = bought.trades[0].trade_id
    # The trade's payment is requested in the background; wait until the read side has it.
    get_trade = qpb.GetTradeRequest(trade_id=trade_id, min_position=bought.position)
    for _ in range(100):
        trade = await _unary(query, "/pointex.v1.QueryService/GetTrade", get_trade, ACME_TOKEN)
        assert isinstance(trade, qpb.GetTradeResponse)
        if trade.trade.payment_id:
            break
        await asyncio.sleep(0.1)
    assert isinstance(trade, qpb.GetTradeResponse)
    assert trade.trade.payment_id, trade
    return Acme(
        merchant,
        member,
        placed.order.order_id,
        trade_id,
        trade.trade.payment_id,
        other_member,
        trade.trade.amount_due_minor,
        issued.transfer_id,
    )


async def test_another_partner_is_refused_on_every_rpc_and_changes_nothing(
    tmp_path: Path, stack: Stack, channels: tuple[grpc.aio.Channel, grpc.aio.Channel]
) -> None:
    """Each row's outcome for `other`; the log unchanged after every refusal."""
    command, query = channels
    acme = await _acme(command, query)
    store_file = tmp_path / "events.db"
    secrets = [acme.merchant, acme.member]
    for rpc in ALL_RPCS:
        build, expected = ROWS[rpc.path]
        channel = command if rpc in COMMAND_RPCS else query
        before = logged_events(store_file)
        request = build(acme)
        outcome, reply = await _call(channel, rpc, request)
        assert (outcome.code, outcome.reason) == expected, (rpc.path, outcome)
        if expected is PUBLIC:
            assert not any(s.encode() in reply for s in secrets), (rpc.path, reply)
        await asyncio.sleep(0)
        assert logged_events(store_file) == before, rpc.path


async def _call(channel: grpc.aio.Channel, rpc: Rpc, request: Message) -> tuple[Outcome, bytes]:
    """Call as `other`; return the outcome and, for a unary success, the reply's bytes.

    A bulk batch is accepted as a whole: its one command's result is the outcome.
    """
    raw = request.SerializeToString()
    if rpc.name == "ExecuteBulk":
        bulk = channel.stream_stream(rpc.path, None, None)

        async def one() -> AsyncIterator[bytes]:
            yield raw

        async for data in bulk(one(), metadata=bearer(OTHER_TOKEN), timeout=10):
            (result,) = pb.ExecuteBulkResponse.FromString(data).results
            return Outcome(grpc.StatusCode(_CODES[result.error.code]), result.error.reason, ""), b""
        raise AssertionError("ExecuteBulk answered nothing")
    if rpc.server_streaming:
        return await call_raw(channel, rpc, [raw], bearer(OTHER_TOKEN)), b""
    try:
        unary = channel.unary_unary(rpc.path, None, None)
        reply: bytes = await unary(raw, metadata=bearer(OTHER_TOKEN), timeout=10)
    except grpc.aio.AioRpcError:
        return await call_raw(channel, rpc, [raw], bearer(OTHER_TOKEN)), b""
    return Outcome(grpc.StatusCode.OK, "", ""), reply


# google.rpc.Code numbers -> the grpc status codes' values.
_CODES = {code.value[0]: code.value for code in grpc.StatusCode}


@pytest.mark.parametrize(
    ("role", "token"),
    [
        (Role.PARTNER, OTHER_TOKEN),
        (Role.PAYMENT_PROVIDER, PROVIDER_TOKEN),
        (Role.QUERY_SERVER, QUERY_TOKEN),
    ],
)
async def test_each_role_calls_only_the_rpcs_its_role_may(
    stack: Stack,
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    role: Role,
    token: str,
) -> None:
    """Every RPC a role is not in METHOD_ROLES for answers ROLE_FORBIDDEN, before anything."""
    command, query = channels
    forbidden = [r for r in ALL_RPCS if role not in METHOD_ROLES[r.path]]
    assert forbidden
    for rpc in forbidden:
        channel = command if rpc in COMMAND_RPCS else query
        empty = rpc.request_class()().SerializeToString()
        outcome = await call_raw(channel, rpc, [empty], bearer(token))
        assert (outcome.code, outcome.reason) == FORBIDDEN, (role, rpc.path, outcome)


async def test_a_payment_provider_calls_back_only_for_its_own_payments(
    tmp_path: Path, stack: Stack, channels: tuple[grpc.aio.Channel, grpc.aio.Channel]
) -> None:
    """The sandbox's credential naming another provider, or another trade: refused, no change."""
    command, query = channels
    acme = await _acme(command, query)
    store_file = tmp_path / "events.db"
    elsewhere = _callback(acme)
    elsewhere.provider_id = "elsewhere"
    foreign_trade = _callback(acme)
    foreign_trade.trade_id = "trade-of-nobody"
    for callback, reason in (
        (elsewhere, "PROVIDER_MISMATCH"),
        (foreign_trade, "SIGNATURE_INVALID"),  # The signature covers the trade id.
    ):
        before = logged_events(store_file)
        confirmed = pb.PaymentCallback()
        confirmed.CopyFrom(callback)
        confirmed.outcome = common_pb2.PAYMENT_OUTCOME_CONFIRMED
        for rpc, request in (
            ("ConfirmPayment", pb.ConfirmPaymentRequest(request_id=rid(), callback=confirmed)),
            ("FailPayment", pb.FailPaymentRequest(request_id=rid(), callback=callback)),
        ):
            path = f"/pointex.v1.CommandService/{rpc}"
            rpc_info = next(r for r in ALL_RPCS if r.path == path)
            outcome = await call_raw(
                command, rpc_info, [request.SerializeToString()], bearer(PROVIDER_TOKEN)
            )
            assert (outcome.code, outcome.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                reason,
            ), (rpc, outcome)
        assert logged_events(store_file) == before
