"""Cooling-off refunds on the command side, on both stores, against a test provider.

A purchase settled under a cooling-off window is refunded: the buyer's points go back to the
seller and the provider refunds the payment once, however often the request is retried. A
refund the provider refuses leaves the buyer with the points; one it cannot answer now
completes later, also after a restart. Outside the window, or after a point was spent, the
buyer's account refuses it by name.
"""

from __future__ import annotations

import uuid

import pytest

from pointex.server.command.app.handlers import TransferRequest
from pointex.server.command.app.refunds import PurchaseRefunds, RefundOutcome
from pointex.server.domain import errors
from pointex.server.domain.program import ProgramRules
from pointex.server.domain.trade import TradeStatus
from pointex.server.domain.values import AccountKind, OrderSide, Span, TransferKind
from pointex.server.eventstore.port import EventStore
from tests.conftest import MakeStore
from tests.integration.test_expiry import set_rules
from tests.integration.test_transfer_unit import check_conservation
from tests.market_node import ACME, Clock, Node, Provider

DAY_MS = 86_400_000
WINDOW_MS = 14 * DAY_MS


async def _bought(node: Node, quantity: int = 30, buyer: str = "") -> tuple[str, str, str]:
    """Settle a purchase of `quantity` points by a member; return (seller, buyer, trade id)."""
    seller = f"seller-{uuid.uuid4().hex[:6]}"
    await node.open(seller, AccountKind.MERCHANT, 100)
    if not buyer:
        buyer = f"buyer-{uuid.uuid4().hex[:6]}"
        await node.open(buyer, AccountKind.MEMBER)
    await node.place(seller, OrderSide.SELL, quantity, 100)
    trade = (await node.place(buyer, OrderSide.BUY, quantity, 100)).trades[0]
    await node.settle_background()
    await node.callback(trade.trade_id, confirmed=True)
    return seller, buyer, trade.trade_id


async def _refund(node: Node, trade_id: str, request_id: str = "") -> RefundOutcome:
    refunds = PurchaseRefunds(node.processes, node.accounts)
    return await refunds.refund(ACME, request_id or uuid.uuid4().hex, trade_id)


async def _started(store: EventStore, provider: Provider, clock: Clock) -> Node:
    node = await Node(store, provider, clock).start()
    await set_rules(node, ProgramRules(cooling_off=Span(WINDOW_MS)))
    return node


async def test_a_refund_gives_the_points_to_the_seller_and_the_money_back_once(
    store: EventStore,
) -> None:
    """REFUNDED: buyer 0, seller whole again, one provider refund of the amount due; retried."""
    provider = Provider()
    node = await _started(store, provider, Clock())
    try:
        seller, buyer, trade_id = await _bought(node)
        assert await node.balances(buyer) == (30, 0)
        outcome = await _refund(node, trade_id, "refund-1")
        assert (outcome.status, outcome.buyer_available_points) == (TradeStatus.REFUNDED, 0)
        assert await node.balances(seller) == (100, 0)
        (asked,) = provider.refunds
        loaded = await node.processes.load(trade_id)
        assert loaded is not None
        assert asked.amount_minor == loaded.trade.created.amount_due_minor
        again = await _refund(node, trade_id, "refund-1")
        assert again.status is TradeStatus.REFUNDED
        assert len(provider.refunds) == 1  # The retry asked nothing more.
        with pytest.raises(errors.FailedPrecondition) as other:
            await _refund(node, trade_id, "refund-2")
        assert other.value.reason == errors.PURCHASE_NOT_REFUNDABLE
    finally:
        await node.stop()
    await check_conservation(store)


async def test_outside_the_window_or_once_spent_a_purchase_is_not_refunded(
    store: EventStore,
) -> None:
    """COOLING_OFF_ENDED after the window; PURCHASE_POINTS_SPENT after a transfer."""
    clock = Clock()
    node = await _started(store, Provider(), clock)
    try:
        _, buyer, late = await _bought(node)
        clock.now_ms += WINDOW_MS + 1
        with pytest.raises(errors.FailedPrecondition) as ended:
            await _refund(node, late)
        assert ended.value.reason == errors.COOLING_OFF_ENDED
        _, _, spent = await _bought(node, buyer=buyer)
        friend = f"friend-{uuid.uuid4().hex[:6]}"
        await node.open(friend, AccountKind.MEMBER)
        gift = TransferRequest(ACME, uuid.uuid4().hex, TransferKind.TRANSFER, buyer, friend, 1, "")
        await node.handlers.transfer(gift)
        with pytest.raises(errors.FailedPrecondition) as used:
            await _refund(node, spent)
        assert used.value.reason == errors.PURCHASE_POINTS_SPENT
        assert await node.balances(buyer) == (59, 0)  # Nothing moved.
    finally:
        await node.stop()
    await check_conservation(store)


async def test_a_declined_refund_leaves_the_buyer_the_points(store: EventStore) -> None:
    """The provider refuses: the points come back to the buyer, the trade is SETTLED again."""
    provider = Provider(refund_refusal="REFUND_EXCEEDS_PAYMENT")
    node = await _started(store, provider, Clock())
    try:
        seller, buyer, trade_id = await _bought(node)
        outcome = await _refund(node, trade_id)
        assert (outcome.status, outcome.declined_reason) == (
            TradeStatus.SETTLED,
            "REFUND_EXCEEDS_PAYMENT",
        )
        assert await node.balances(buyer) == (30, 0)
        assert await node.balances(seller) == (70, 0)
    finally:
        await node.stop()
    await check_conservation(store)


async def test_a_refund_the_provider_cannot_answer_completes_after_a_restart(
    make_store: MakeStore,
) -> None:
    """REFUNDING while the provider is down; the next start asks again with the same id."""
    store = make_store()
    await store.open()
    clock = Clock()
    provider = Provider(refunds_unavailable=1_000_000)
    node = await _started(store, provider, clock)
    seller, buyer, trade_id = await _bought(node)
    outcome = await _refund(node, trade_id)
    assert outcome.status is TradeStatus.REFUNDING
    assert await node.balances(buyer) == (0, 0)  # The points are on their way back.
    node.abort()
    provider.refunds_unavailable = 0
    again = await Node(store, provider, clock).start()
    try:
        await again.settle_background()
        loaded = await again.processes.load(trade_id)
        assert loaded is not None
        assert loaded.trade.status is TradeStatus.REFUNDED
        assert await again.balances(seller) == (100, 0)
        assert len({r.refund_id for r in provider.refunds}) == 1  # One refund, asked again.
    finally:
        await again.stop()
    await check_conservation(store)
