"""Cooling-off end to end: a purchase refunded through both servers and the sandbox provider.

Real command, query and sandbox processes. Under a 14-day window a settled purchase is
refunded with RefundPurchase: the sandbox records one refund of the amount due however often
the request is retried, the trade reads REFUNDED, the seller has the points back and
CheckInvariants finds nothing wrong. A second purchase, one point of which the buyer gave
away, is refused with PURCHASE_POINTS_SPENT in its ErrorInfo.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from pointex.sandbox.v1 import sandbox_pb2
from pointex.v1 import common_pb2, query_service_pb2
from tests.e2e.conftest import OPERATOR_TOKEN, bearer, rules_in_force_everywhere
from tests.e2e.test_event_feed import error_reason
from tests.e2e.test_market import Market, _order, _settle, _traders, pb
from tests.e2e.test_market import market as market  # noqa: PLC0414 - the fixture.

WINDOW_S = 14 * 86_400


async def _purchase(market: Market, seller: str, buyer: str, quantity: int) -> str:
    """Match and pay a purchase of `quantity` points; return its trade id once SETTLED."""
    await _order(market, seller, common_pb2.ORDER_SIDE_SELL, quantity, 100)
    placed = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, quantity, 100)
    trade_id = placed.trades[0].trade_id
    trade = await market.wait_trade(trade_id, placed.position, until="payment")
    await _settle(market, trade.payment_id, sandbox_pb2.OUTCOME_CONFIRMED)
    await market.wait_trade(trade_id, placed.position, until="TRADE_STATUS_SETTLED")
    return trade_id


async def test_a_purchase_is_refunded_once_and_a_spent_one_is_refused(market: Market) -> None:
    """REFUNDED with one sandbox refund; PURCHASE_POINTS_SPENT after a point left the buyer."""
    rules = common_pb2.ProgramRules(cooling_off=Duration(seconds=WINDOW_S))
    await market.command(
        "SetProgramRules",
        pb.SetProgramRulesRequest(request_id=uuid.uuid4().hex, expected_version=0, rules=rules),
        OPERATOR_TOKEN,
    )
    await rules_in_force_everywhere()
    seller, buyer = await _traders(market)
    trade_id = await _purchase(market, seller, buyer, 10)
    request = pb.RefundPurchaseRequest(request_id=uuid.uuid4().hex, trade_id=trade_id)
    reply = await market.command("RefundPurchase", request)
    assert isinstance(reply, pb.RefundPurchaseResponse)
    assert (reply.trade_status, reply.buyer_available_points) == (
        common_pb2.TRADE_STATUS_REFUNDED,
        0,
    )
    again = await market.command("RefundPurchase", request)
    assert isinstance(again, pb.RefundPurchaseResponse)
    assert again.trade_status == common_pb2.TRADE_STATUS_REFUNDED
    trade = await market.wait_trade(trade_id, reply.position, until="TRADE_STATUS_REFUNDED")
    payment = await market.sandbox.GetPayment(
        sandbox_pb2.GetPaymentRequest(payment_id=trade.payment_id), timeout=10
    )
    assert payment.payment.refunded_minor == trade.amount_due_minor
    assert len(payment.payment.refunds) == 1
    assert (await market.account(seller)).available_points == 100

    spent = await _purchase(market, seller, buyer, 5)
    gift = pb.TransferPointsRequest(
        request_id=uuid.uuid4().hex, from_account_id=buyer, to_account_id=seller, amount_points=1
    )
    await market.command("TransferPoints", gift)
    refused = pb.RefundPurchaseRequest(request_id=uuid.uuid4().hex, trade_id=spent)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await market.command("RefundPurchase", refused)
    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error.value) == "PURCHASE_POINTS_SPENT"
    checked = await market.queries.CheckInvariants(
        query_service_pb2.CheckInvariantsRequest(min_position=reply.position),
        metadata=bearer(OPERATOR_TOKEN),
        timeout=10,
    )
    assert not checked.violations, checked
