"""Payment callbacks duplicated, reordered, late, forged and crossed: one outcome per trade.

Against the real stack (sandbox provider, command and query servers) the test plays the
payment provider, signing callbacks with its secret, for trades waiting for payment:

- duplicated: one confirmation delivered four times at once: one settlement, the same
  reply each time (redeliveries marked `duplicate`);
- reordered: a confirmation and a failure of the same payment at once: the trade ends
  SETTLED or CANCELLED, never both; a confirmation that loses is flagged for a refund;
- late: a confirmation after the trade was cancelled by a failure: RefundRequired, once,
  however often it comes;
- forged: a bad signature: refused, the trade untouched (a genuine confirmation settles it);
- crossed: one trade's payment named with another trade's id: refused, both untouched.

Then every point is where the outcomes say: the buyer holds exactly the settled
quantities, and the query server finds I1 and I2 intact.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from pointex.client.positions import decode_global
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.chaos.conftest import Report, scale
from tests.e2e.conftest import OPERATOR_TOKEN, PROVIDER_TOKEN, bearer
from tests.e2e.test_event_feed import error_reason
from tests.e2e.test_market import Market, _callback, _order, _traders, market

__all__ = ["market"]  # The fixture, for pytest.

SETTLED = common_pb2.TRADE_STATUS_SETTLED
CANCELLED = common_pb2.TRADE_STATUS_CANCELLED
FAILED = common_pb2.PAYMENT_OUTCOME_FAILED
SCENARIOS = ("duplicated", "reordered", "late", "forged", "crossed")


class _Provider:
    """The payment provider's side: delivers signed callbacks, keeps the latest position."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.latest = common_pb2.Position()

    def _saw(self, position: common_pb2.Position) -> None:
        if not self.latest.token or decode_global(position.token) > decode_global(
            self.latest.token
        ):
            self.latest = position

    async def deliver(self, callback: pb.PaymentCallback) -> tuple[int, bool, bool]:
        """Deliver `callback`; return (trade status, refund required, duplicate)."""
        if callback.outcome == FAILED:
            failed = pb.FailPaymentRequest(request_id=uuid.uuid4().hex, callback=callback)
            answer = await self.market.command("FailPayment", failed, PROVIDER_TOKEN)
            assert isinstance(answer, pb.FailPaymentResponse)
            self._saw(answer.position)
            return answer.trade_status, False, answer.duplicate
        request = pb.ConfirmPaymentRequest(request_id=uuid.uuid4().hex, callback=callback)
        reply = await self.market.command("ConfirmPayment", request, PROVIDER_TOKEN)
        assert isinstance(reply, pb.ConfirmPaymentResponse)
        self._saw(reply.position)
        return reply.trade_status, reply.refund_required, reply.duplicate

    async def refused(self, callback: pb.PaymentCallback) -> tuple[grpc.StatusCode, str]:
        """Deliver a callback that must be refused; return the code and the reason."""
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            await self.deliver(callback)
        return refusal.value.code(), error_reason(refusal.value)


async def _play(
    provider: _Provider, name: str, trade: common_pb2.Trade, other: common_pb2.Trade
) -> None:
    """Play one scenario on `trade` (`other` waits for its payment too)."""
    deliver = provider.deliver
    match name:
        case "duplicated":
            callback = _callback(trade)
            replies = await asyncio.gather(*(deliver(callback) for _ in range(4)))
            assert {status for status, _, _ in replies} == {SETTLED}
            assert sum(not duplicate for _, _, duplicate in replies) == 1, replies
        case "reordered":
            confirm, fail = _callback(trade), _callback(trade, outcome=FAILED)
            (confirmed, refund, _), (failed, _, _) = await asyncio.gather(
                deliver(confirm), deliver(fail)
            )
            assert confirmed == failed, (confirmed, failed)  # One outcome, whichever came first.
            assert refund == (confirmed == CANCELLED)
        case "late":
            await deliver(_callback(trade, outcome=FAILED))
            late = _callback(trade)
            replies = [await deliver(late) for _ in range(3)]
            assert replies == [(CANCELLED, True, False)] + [(CANCELLED, True, True)] * 2
        case "forged":
            forged = _callback(trade)
            forged.signature = bytes(32)
            assert await provider.refused(forged) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "SIGNATURE_INVALID",
            )
            assert (await deliver(_callback(trade)))[0] == SETTLED
        case "crossed":
            assert await provider.refused(_callback(trade, trade_id=other.trade_id)) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "TRADE_MISMATCH",
            )
            assert (await deliver(_callback(trade)))[0] == SETTLED


async def test_each_trade_has_one_outcome_whatever_the_callbacks(
    market: Market, chaos_report: Report
) -> None:
    """Every scenario on its own trades; then the points are where the outcomes say."""
    rounds = scale(1, 8)
    provider = _Provider(market)
    seller, buyer = await _traders(market)
    count = rounds * len(SCENARIOS)
    await _order(market, seller, common_pb2.ORDER_SIDE_SELL, count + 1, 100)
    trades: list[common_pb2.Trade] = []
    for _ in range(count + 1):
        bought = await _order(market, buyer, common_pb2.ORDER_SIDE_BUY, 1, 100)
        trade = bought.trades[0]
        trades.append(await market.wait_trade(trade.trade_id, bought.position, until="payment"))
    spare = trades.pop()  # Stays pending: the crossed callbacks name it.
    names = [SCENARIOS[n % len(SCENARIOS)] for n in range(count)]
    await asyncio.gather(
        *(_play(provider, n, t, spare) for n, t in zip(names, trades, strict=True))
    )
    outcomes: dict[str, int] = {}
    settled = 0
    for name, trade in zip(names, trades, strict=True):
        ended = await market.trade(trade.trade_id, provider.latest)
        assert ended.status in {SETTLED, CANCELLED}, ended
        settled += ended.quantity_points if ended.status == SETTLED else 0
        key = f"{name} {common_pb2.TradeStatus.Name(ended.status).removeprefix('TRADE_STATUS_')}"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert (await market.trade(spare.trade_id, provider.latest)).status == (
        common_pb2.TRADE_STATUS_PENDING_PAYMENT
    )
    assert (await market.account(buyer)).available_points == settled
    audit = await market.queries.CheckInvariants(
        qpb.CheckInvariantsRequest(min_position=provider.latest),
        metadata=bearer(OPERATOR_TOKEN),
        timeout=10,
    )
    assert audit.ok, audit
    chaos_report(
        "one outcome per trade: the same reply to every redelivery, a refund flagged for a "
        "confirmation that lost, bad callbacks refused; the buyer holds exactly the settled "
        "points; I1 and I2 hold",
        f"{count} trades: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
    )
