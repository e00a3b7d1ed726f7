"""Bugs the deterministic simulation found, each shown on its own (all fixed).

Each test states what the specification promises and failed while the bug was there. A bug
found and not fixed yet gets a test marked xfail strict here, and an entry in
tests/simulation/known_bugs.py that keeps the simulation's runs around it meanwhile. The
stores are memory stores whose faults are scripted here: the answer to one commit is lost
(`CommitOutcomeUnknown`), as when the connection drops during COMMIT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

import pytest

from pointex.server.actors.stream_actor import Decide, Decided, appending
from pointex.server.command.app.handlers import TransferRequest
from pointex.server.command.bootstrap import start_core
from pointex.server.domain.commands import MintPoints, OpenAccount, ReleasePoints, SellPoints
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.processes import placement
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    OrderSide,
    TimeInForce,
    TransferKind,
)
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    NewEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from tests.market_node import ACME, Clock, Node, Provider
from tests.simulation.memory_store import Fault, Faults, MemoryDatabase, MemoryEventStore


class _AnswerLost(Faults):
    """Lose the answer to the first commit holding an event of one of `types` (it commits)."""

    def __init__(self, types: Collection[str]) -> None:
        """Lose the answer to one commit only, the first with an event of `types`."""
        self._types = types
        self.lost = 0

    def append_fault(self, units: Sequence[Sequence[StreamAppend]]) -> Fault:
        """Lose the answer to the first commit holding an event of the types."""
        events = (event for unit in units for append in unit for event in append.events)
        if not self.lost and any(event.type in self._types for event in events):
            self.lost += 1
            return Fault.AFTER_COMMIT
        return Fault.NONE


StartNode = Callable[[Faults], Awaitable[Node]]


@pytest.fixture
def database() -> MemoryDatabase:
    """A fresh memory database."""
    return MemoryDatabase()


@pytest.fixture
async def start_node(database: MemoryDatabase) -> AsyncIterator[StartNode]:
    """Yield a starter of nodes over the test's database with some faults; stop them after."""
    started: list[Node] = []

    async def start(faults: Faults) -> Node:
        """Start a node over a new store on the database, with `faults`."""
        store = MemoryEventStore(database, faults=faults)
        await store.open()
        started.append(await Node(store, Provider(), Clock()).start())
        return started[-1]

    yield start
    for node in started:
        await node.stop()


async def _quiet(node: Node) -> None:
    """Wait until the node's detached steps (retries included) have ended."""
    async with asyncio.timeout(10):
        while node.runner.busy:  # noqa: ASYNC110 - the steps are other tasks' state.
            await asyncio.sleep(0.05)


async def test_an_order_retried_after_its_holds_unknown_outcome_is_held_once(
    start_node: StartNode,
) -> None:
    """The answer to a SELL order's hold is lost; the client retries: 5 held, not 10."""
    faults = _AnswerLost({"PointsHeld"})
    node = await start_node(faults)
    await node.open("m", AccountKind.MERCHANT, 100)
    with pytest.raises(CommitOutcomeUnknown):
        await node.place("m", OrderSide.SELL, 5, 100, request_id="r-1")
    assert faults.lost == 1
    again = await node.place("m", OrderSide.SELL, 5, 100, request_id="r-1")
    assert again.order.quantity_points == 5
    assert await node.balances("m") == (95, 5)


async def test_a_release_retried_after_its_unknown_outcome_is_released_once(
    start_node: StartNode,
) -> None:
    """An IOC BUY finds nothing; the answer to its release is lost and the release retried.

    The member's resting BUY order of 4 must still count as being bought.
    """
    faults = _AnswerLost({"BuyReleased"})
    node = await start_node(faults)
    await node.open("u", AccountKind.MEMBER)
    await node.place("u", OrderSide.BUY, 4, 100, request_id="r-rests")
    ioc = await node.place("u", OrderSide.BUY, 3, 99, TimeInForce.IOC, request_id="r-ioc")
    assert ioc.order.cancelled_quantity_points == 3
    await _quiet(node)
    assert faults.lost == 1
    account = await node.accounts.peek("u")
    assert account is not None
    assert account.buying_points == 4


async def test_a_trade_of_a_placement_whose_answer_was_lost_has_its_payment_requested(
    start_node: StartNode,
) -> None:
    """A BUY order matches; the answer to its placement's commit is lost; the client retries.

    The trade exists (the retry's reply names it), so its payment must be requested and its
    deadline watched, as for any trade, without waiting for the next restart.
    """
    faults = _AnswerLost({"TradeCreated"})
    node = await start_node(faults)
    await node.open("m", AccountKind.MERCHANT, 100)
    await node.open("u", AccountKind.MEMBER)
    await node.place("m", OrderSide.SELL, 5, 100, request_id="r-sell")
    with pytest.raises(CommitOutcomeUnknown):
        await node.place("u", OrderSide.BUY, 2, 100, request_id="r-buy")
    assert faults.lost == 1
    await _quiet(node)
    placed = await node.place("u", OrderSide.BUY, 2, 100, request_id="r-buy")
    (trade,) = placed.trades
    await node.settle_background()
    assert node.provider.asked[trade.trade_id] == 1


async def test_a_cancellation_whose_answer_was_lost_releases_the_order_once(
    start_node: StartNode,
) -> None:
    """The answer to a SELL order's cancellation is lost; the client retries: 5 back, once."""
    faults = _AnswerLost({"OrderCancelled"})
    node = await start_node(faults)
    await node.open("m", AccountKind.MERCHANT, 100)
    placed = await node.place("m", OrderSide.SELL, 5, 100, request_id="r-sell")
    order_id = placed.order.order_id
    with pytest.raises(CommitOutcomeUnknown):
        await node.cancel(order_id, request_id="r-cancel")
    assert faults.lost == 1
    await _quiet(node)
    again = await node.cancel(order_id, request_id="r-cancel")
    assert again.released_points == 5
    await _quiet(node)
    assert await node.balances("m") == (100, 0)


async def test_a_trade_whose_cancellations_answer_was_lost_releases_its_buyer(
    start_node: StartNode,
) -> None:
    """The answer to a trade's cancellation (payment failed) is lost; the provider redelivers.

    The buyer's account must stop counting the trade as being bought without a restart.
    """
    faults = _AnswerLost({"TradeCancelled"})
    node = await start_node(faults)
    await node.open("m", AccountKind.MERCHANT, 100)
    await node.open("u", AccountKind.MEMBER)
    await node.place("m", OrderSide.SELL, 5, 100, request_id="r-sell")
    placed = await node.place("u", OrderSide.BUY, 2, 100, request_id="r-buy")
    (trade,) = placed.trades
    await node.settle_background()
    with pytest.raises(CommitOutcomeUnknown):
        await node.callback(trade.trade_id, confirmed=False, event_id="evt-1")
    assert faults.lost == 1
    await node.callback(trade.trade_id, confirmed=False, event_id="evt-1")
    await _quiet(node)
    buyer = await node.accounts.peek("u")
    assert buyer is not None
    assert buyer.buying_points == 0
    assert await node.balances("m") == (95, 5)  # Back on the SELL order, still resting.


async def test_a_trade_whose_confirmations_answer_was_lost_is_delivered(
    start_node: StartNode,
) -> None:
    """The answer to a payment's confirmation is lost; the provider redelivers: delivered."""
    faults = _AnswerLost({"PaymentConfirmed"})
    node = await start_node(faults)
    await node.open("m", AccountKind.MERCHANT, 100)
    await node.open("u", AccountKind.MEMBER)
    await node.place("m", OrderSide.SELL, 5, 100, request_id="r-sell")
    placed = await node.place("u", OrderSide.BUY, 2, 100, request_id="r-buy")
    (trade,) = placed.trades
    await node.settle_background()
    with pytest.raises(CommitOutcomeUnknown):
        await node.callback(trade.trade_id, confirmed=True, event_id="evt-1")
    assert faults.lost == 1
    await node.callback(trade.trade_id, confirmed=True, event_id="evt-1")
    await _quiet(node)
    assert await node.balances("u") == (2, 0)
    assert await node.balances("m") == (95, 3)


async def test_a_transfer_retried_after_an_unknown_debit_completes(
    start_node: StartNode,
) -> None:
    """The answer to a transfer's debit is lost; the client retries at once: one transfer."""
    faults = _AnswerLost({"PointsDebited"})
    first = await start_node(faults)
    await first.open("m", AccountKind.MERCHANT, 100)
    await first.open("u", AccountKind.MEMBER)
    await first.stop()
    # A new node has no actor loaded: the transfer takes its steps, the debit first.
    node = await start_node(faults)
    request = TransferRequest(ACME, "t-1", TransferKind.ISSUE, "m", "u", 10, "")
    with pytest.raises(CommitOutcomeUnknown):
        await node.handlers.transfer(request)
    done = await node.handlers.transfer(request)
    assert done.initiated.amount_points == 10
    assert await node.balances("m") == (90, 0)
    assert await node.balances("u") == (10, 0)


async def test_a_release_beside_a_doomed_sale_is_not_refused_by_an_assertion(
    database: MemoryDatabase,
) -> None:
    """A trade's second driver decides its sale while the first's committed one stands.

    The second sale will meet the trade stream's conflict, but until then the seller's actor
    counts it. A release of another order, decided meanwhile, must not fail an assertion
    (a release is never refused): it may commit, or ask to be retried.
    """
    store = MemoryEventStore(database)
    await store.open()
    core = start_core(store, resident_max=10, clock=Clock())
    actors = core.actors
    try:
        await actors.ask("s", Decide(OpenAccount(OPERATOR, "s", AccountKind.MERCHANT, "acme", "")))
        await actors.ask("s", Decide(MintPoints(OPERATOR, "s", 10, "")))
        for order_id, quantity in (("A", 1), ("B", 2)):
            order = PlaceOrder(
                order_id, "s", "PTS-CNY", OrderSide.SELL, quantity, 100, TimeInForce.GTC, ""
            )
            await actors.ask("s", Decide(placement.start(ACME.caller, order).command))
        trade = StreamAppend("trade-t1", 0, (NewEvent("TradeStep", 1, b""),))
        await actors.ask("s", Decide(SellPoints("s", "t1", "A", 1), appending(trade)))
        seller = actors.actor("s")
        doomed = seller.tell(Decide(SellPoints("s", "t1", "A", 1), appending(trade)))
        release: asyncio.Future[Decided[None]] = seller.tell(Decide(ReleasePoints("s", "B", "", 2)))
        with pytest.raises(WrongExpectedVersion):
            await doomed
        (outcome,) = await asyncio.gather(release, return_exceptions=True)
        assert not isinstance(outcome, AssertionError), outcome
    finally:
        await core.lookup.stop()
        await core.committer.stop()
