"""Expiry in lots on the command side, on both stores: lots travel, lapse on time and at start.

Transfers and trades carry the lots their points were taken from; the timer lapses them on
time, and deadlines that passed while the server was down lapse at the next start.

A node runs on a clock the test moves (tests/market_node.py); conservation (I1, expired points
counted out of circulation) is checked over the whole log at the end.
"""

from __future__ import annotations

import asyncio
import uuid

from pointex.server.command.app.handlers import TransferRequest
from pointex.server.command.app.idempotency import Request
from pointex.server.domain import lots
from pointex.server.domain.lots import ExpiryPolicy, Lot
from pointex.server.domain.program import ProgramRules, SetProgramRules
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    Instant,
    OrderSide,
    Principal,
    Role,
    Span,
    TransferKind,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore
from tests.conftest import MakeStore
from tests.integration.test_transfer_unit import check_conservation, read_log
from tests.market_node import ACME, START_MS, Clock, Node, Provider

DAY_MS = 86_400_000
LIFETIME_MS = 30 * DAY_MS
NOTICE_MS = 7 * DAY_MS
OPERATOR_PRINCIPAL = Principal("ops", Role.OPERATOR)


class _Replies:
    """Records a rules change's reply as its version."""

    def encode(self, reply: int) -> bytes:
        return str(reply).encode()

    def at(self, reply: int, position: int) -> int:
        del position
        return reply

    def decode(self, data: bytes, position: int) -> int:
        del position
        return int(data)


async def set_expiry(node: Node, lifetime_ms: int, notice_ms: int = 0) -> None:
    """Put an expiry policy in force, as SetProgramRules does."""
    await set_rules(node, ProgramRules(expiry=ExpiryPolicy(Span(lifetime_ms), Span(notice_ms))))


async def set_rules(node: Node, rules: ProgramRules) -> None:
    """Put `rules` in force, as SetProgramRules does."""
    version = node.program.limits().version
    command = SetProgramRules(OPERATOR, version, rules)
    digest = uuid.uuid4().bytes * 2
    await node.handlers.set_program_rules(
        OPERATOR_PRINCIPAL,
        Request(uuid.uuid4().hex, "SetProgramRules", digest),
        command,
        _Replies(),
        lambda program: program.version,
    )


def _transfer(kind: TransferKind, source: str, target: str, points: int) -> TransferRequest:
    return TransferRequest(ACME, uuid.uuid4().hex, kind, source, target, points, "")


async def _lots(node: Node, account_id: str) -> tuple[Lot, ...]:
    state = await node.accounts.peek(account_id)
    assert state is not None
    return state.lots


async def _types(store: EventStore, account_id: str) -> list[str]:
    return [r.type for r in await read_log(store) if r.stream_id == f"account-{account_id}"]


async def _members(node: Node) -> tuple[str, str, str]:
    merchant, alice, bob = (f"{who}-{uuid.uuid4().hex[:6]}" for who in ("m", "alice", "bob"))
    await node.open(merchant, AccountKind.MERCHANT, 10_000)
    await node.open(alice, AccountKind.MEMBER)
    await node.open(bob, AccountKind.MEMBER)
    return merchant, alice, bob


async def test_transferred_points_keep_their_lots_and_lapse_on_time(store: EventStore) -> None:
    """Alice earns 100 under a 30-day policy, gives Bob 60 (both paths): his lapse when hers do."""
    clock = Clock()
    node = await Node(store, Provider(), clock).start()
    try:
        merchant, alice, bob = await _members(node)
        await node.handlers.transfer(_transfer(TransferKind.ISSUE, merchant, alice, 50))
        await set_expiry(node, LIFETIME_MS, NOTICE_MS)
        await node.handlers.transfer(_transfer(TransferKind.ISSUE, merchant, alice, 100))
        lot = Lot(Instant(START_MS), Instant(START_MS + LIFETIME_MS), 100)
        assert await _lots(node, alice) == (lot,)
        clock.now_ms += DAY_MS
        # The points that never lapse go first: 50 of them, then 10 of the lot.
        await node.handlers.transfer(_transfer(TransferKind.TRANSFER, alice, bob, 60))
        node.accounts.actor(bob)  # Both loaded now: the second goes in one unit.
        await node.handlers.transfer(_transfer(TransferKind.TRANSFER, alice, bob, 20))
        assert await _lots(node, bob) == (Lot(lot.earned_at, lot.expires_at, 30),)
        assert await _lots(node, alice) == (Lot(lot.earned_at, lot.expires_at, 70),)
        clock.now_ms = START_MS + LIFETIME_MS - NOTICE_MS
        assert await node.expiry.expire_now(bob) == START_MS + LIFETIME_MS
        clock.now_ms = START_MS + LIFETIME_MS
        async with asyncio.timeout(10):  # The timer's own wake, within its one-second bound.
            while await node.balances(alice) != (0, 0):  # noqa: ASYNC110 - polls an actor.
                await asyncio.sleep(0.05)
            while await node.balances(bob) != (50, 0):  # The 50 that never lapse stay.  # noqa: ASYNC110 - polls an actor.
                await asyncio.sleep(0.05)
        assert await _lots(node, bob) == ()
        assert "PointsExpiringSoon" in await _types(store, bob)
        assert (await _types(store, alice))[-1] == "PointsExpired"
    finally:
        await node.stop()
    await check_conservation(store)


async def test_bought_points_keep_the_sellers_lots(store: EventStore) -> None:
    """Alice sells 30 of her expiring points on the market: Bob's 30 lapse when hers would."""
    clock = Clock()
    node = await Node(store, Provider(), clock).start()
    try:
        merchant, alice, bob = await _members(node)
        await set_expiry(node, LIFETIME_MS)
        await node.handlers.transfer(_transfer(TransferKind.ISSUE, merchant, alice, 100))
        await node.place(alice, OrderSide.SELL, 30, 100)
        trade = (await node.place(bob, OrderSide.BUY, 30, 100)).trades[0]
        await node.settle_background()
        await node.callback(trade.trade_id, confirmed=True)
        lot = Lot(Instant(START_MS), Instant(START_MS + LIFETIME_MS), 30)
        assert await _lots(node, bob) == (lot,)
        assert await _lots(node, alice) == (Lot(lot.earned_at, lot.expires_at, 70),)
        clock.now_ms = START_MS + LIFETIME_MS
        assert await node.expiry.expire_now(bob) == 0
        assert await node.balances(bob) == (0, 0)
    finally:
        await node.stop()
    await check_conservation(store)


async def test_deadlines_that_passed_while_down_lapse_at_start(make_store: MakeStore) -> None:
    """Lots due while no server ran lapse at the next start, before it takes a command.

    Three starts: the lots arrive in the first; the second starts before they are due (its
    checkpoint keeps the calendar, so the third need not read the log before it); the third
    starts after they are due, and finds them through the calendar alone.
    """
    store = make_store()
    await store.open()
    clock = Clock()
    node = await Node(store, Provider(), clock).start()
    merchant, alice, bob = await _members(node)
    await set_expiry(node, LIFETIME_MS)
    await node.handlers.transfer(_transfer(TransferKind.ISSUE, merchant, alice, 100))
    await node.handlers.transfer(_transfer(TransferKind.ISSUE, merchant, bob, 5))
    await node.handlers.transfer(_transfer(TransferKind.TRANSFER, bob, alice, 5))
    await node.stop()
    clock.now_ms += DAY_MS
    second = await Node(store, Provider(), clock).start()
    # Both: the calendar holds a moment no later than each deadline. Bob's lot left with his
    # transfer; he is asked when it would have lapsed, and answers that nothing is due.
    assert second.expiry.watched == 2
    await second.stop()
    clock.now_ms = START_MS + LIFETIME_MS + DAY_MS
    third = await Node(store, Provider(), clock).start()
    try:
        assert await third.balances(alice) == (0, 0)
        assert third.expiry.watched == 0
        (expired,) = [
            codec.decode(r)
            for r in await read_log(store)
            if r.type == "PointsExpired" and r.stream_id == f"account-{alice}"
        ]
        assert expired.amount_points == 105
        assert lots.points(expired.lots) == 105
    finally:
        await third.stop()
    await check_conservation(store)
