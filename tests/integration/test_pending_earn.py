"""Pending earn on the command side, on both stores: pending, activated on time, reversed.

An issue with an activation time a moment ahead leaves the member's available points as
they were; the activation timer makes them available when the time comes, once; a
reversal of a pending issue takes the pending points back and leaves nothing to activate.
Conservation (I1, pending points included) holds throughout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from pointex.server.command.app.activations import PendingActivations
from pointex.server.command.app.handlers import ReversalRequest, TransferRequest
from pointex.server.domain.program import ProgramRules
from pointex.server.domain.values import AccountKind, Instant, Span, TransferKind
from pointex.server.eventstore.port import EventStore
from tests.conftest import MakeStore
from tests.integration.test_expiry import set_rules
from tests.integration.test_transfer_unit import (
    ACME,
    FUNDS_POINTS,
    HOT,
    Node,
    check_conservation,
    issue,
)
from tests.market_node import ACME as MARKET_ACME
from tests.market_node import Clock, Provider
from tests.market_node import Node as MarketNode

SOON_MS = 300
WAIT_S = 10


def now_ms() -> int:
    """The wall clock, in milliseconds."""
    return time.time_ns() // 1_000_000


async def pending_points(node: Node, account_id: str) -> tuple[int, int]:
    """Return (available, pending) points of an account as its actor has them."""
    state = await node.actors.peek(account_id)
    assert state is not None
    return state.available_points, state.pending_points


async def test_pending_points_activate_on_time_and_a_reversal_takes_them_back(
    make_store: MakeStore,
) -> None:
    """Two pending issues: one activates by the timer, one is reversed in part first."""
    store = make_store()
    await store.open()
    node = Node(store)
    activations = PendingActivations(node.actors, node.runner, now_ms)
    node.actors.watch_pending(activations.watch)
    try:
        await node.fund()
        soon = Instant(now_ms() + SOON_MS)
        first = await node.handlers.transfer(replace(issue("p1", HOT[0], 40), activates_at=soon))
        later = Instant(now_ms() + 60_000)
        second = await node.handlers.transfer(replace(issue("p2", HOT[0], 25), activates_at=later))
        assert await pending_points(node, HOT[0]) == (FUNDS_POINTS, 65)
        reversal = ReversalRequest(
            ACME, "back", TransferKind.REVERSE_ISSUE, second.initiated.transfer_id, 10, "returned"
        )
        await node.handlers.reverse(reversal)
        assert await pending_points(node, HOT[0]) == (FUNDS_POINTS, 55)
        async with asyncio.timeout(WAIT_S):
            while (await pending_points(node, HOT[0]))[1] != 15:  # noqa: ASYNC110 - polls an actor.
                await asyncio.sleep(0.05)
        assert await pending_points(node, HOT[0]) == (FUNDS_POINTS + 40, 15)
        assert activations.watched == 1  # The second waits for its own time.
        assert first.initiated.activates_at == soon
    finally:
        activations.stop()
        await node.stop()
    await check_conservation(store)


async def test_the_programs_pending_period_holds_issues_back_and_the_timer_releases_them(
    store: EventStore,
) -> None:
    """An issue with no time of its own waits the program's period, then activates on time."""
    clock = Clock()
    node = await MarketNode(store, Provider(), clock).start()
    try:
        await set_rules(node, ProgramRules(pending_period=Span(86_400_000)))
        await node.open("shop", AccountKind.MERCHANT, 100)
        await node.open("alice", AccountKind.MEMBER)
        issue = TransferRequest(MARKET_ACME, "p1", TransferKind.ISSUE, "shop", "alice", 40, "")
        await node.handlers.transfer(issue)
        state = await node.accounts.peek("alice")
        assert state is not None
        assert (state.available_points, state.pending_points) == (0, 40)
        clock.now_ms += 86_400_000
        async with asyncio.timeout(WAIT_S):
            while (await node.balances("alice"))[0] != 40:  # noqa: ASYNC110 - polls an actor.
                await asyncio.sleep(0.05)
    finally:
        await node.stop()
