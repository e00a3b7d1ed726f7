"""Order fee quotes on the command side, on a real event store (SQLite and PostgreSQL).

A market node (tests/market_node.py) serves PTS-CNY; a restart serves it with other fees,
as a command server restarted with a changed markets file does. A PlaceOrder holding the
quote in force is placed, and its retry replays; after the fees changed, the old quote is
refused with FEE_SCHEDULE_CHANGED before anything is held. An order held with a quote before
the restart is placed by recovery only under its schedule: with the fees changed it is
rejected and its points released, through the placement's own refusal path.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from pointex.server.actors.stream_actor import Decide
from pointex.server.command.app.idempotency import request_key
from pointex.server.command.app.market_handlers import order_id_for
from pointex.server.command.edge.replies import request_of
from pointex.server.domain import errors, market_fees
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.market_events import OrderPlaced, OrderRejected
from pointex.server.domain.processes import placement
from pointex.server.domain.values import (
    AccountKind,
    FeeSchedule,
    Market,
    OrderFeeQuote,
    OrderSide,
    Span,
    TimeInForce,
)
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2
from tests import market_node
from tests.market_node import ACME, Clock, Node, Provider

# The node's market with a dearer seller's fee: a new fee schedule (version 2).
DEARER = dataclasses.replace(market_node.PTS_CNY, seller_fee=FeeSchedule(80, 3))
# The node's market with another payment window only: the fee schedule stays version 1.
SLOWER = dataclasses.replace(market_node.PTS_CNY, payment_window=Span(120_000))


async def _node(store: EventStore, market: Market, monkeypatch: pytest.MonkeyPatch) -> Node:
    """Start a node serving PTS-CNY as `market` (recording it where it changed)."""
    monkeypatch.setattr(market_node, "PTS_CNY", market)
    return await Node(store, Provider(), Clock()).start()


async def _seller(node: Node) -> str:
    """Open a funded seller (a merchant, so that it can be minted into)."""
    seller = f"seller-{uuid.uuid4().hex[:6]}"
    await node.open(seller, AccountKind.MERCHANT, 100)
    return seller


async def _quote(node: Node, side: OrderSide, quantity: int, price: int) -> OrderFeeQuote:
    """Return the quote of an order under the market's fee schedule in the book now."""
    book = await node.book()
    assert book.market is not None
    return market_fees.quote(book.market, book.fee_version, side, quantity, price).quote


def _order(
    seller: str, quote: OrderFeeQuote, request_id: str
) -> tuple[pb.PlaceOrderRequest, PlaceOrder]:
    """Return a GTC SELL of 10 at 100 with `quote`, as the edge converts it."""
    request = pb.PlaceOrderRequest(
        request_id=request_id,
        account_id=seller,
        market_id="PTS-CNY",
        side=common_pb2.ORDER_SIDE_SELL,
        quantity_points=10,
        limit_price_minor=100,
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
        fee_quote=common_pb2.OrderFeeQuote(
            fee_minor=quote.fee_minor, schedule_version=quote.schedule_version
        ),
    )
    order_id = order_id_for(request_key(ACME, request_id))
    order = PlaceOrder(
        order_id, seller, "PTS-CNY", OrderSide.SELL, 10, 100, TimeInForce.GTC, "", quote
    )
    return request, order


async def _place(
    node: Node, seller: str, quote: OrderFeeQuote, request_id: str
) -> pb.PlaceOrderResponse:
    request, order = _order(seller, quote, request_id)
    return await node.market.place_order(ACME, request_of(request), order)


async def test_a_quoted_order_is_placed_and_a_stale_quote_holds_nothing(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quote, place, retry (replayed); restart with a dearer seller's fee: the quote is refused."""
    node = await _node(store, market_node.PTS_CNY, monkeypatch)
    try:
        seller = await _seller(node)
        quote = await _quote(node, OrderSide.SELL, 10, 100)
        assert quote == OrderFeeQuote(5, 1)  # ceil(1000 * 50 / 10000).
        placed = await _place(node, seller, quote, "r-quoted")
        assert placed.order.status == common_pb2.ORDER_STATUS_OPEN
        assert await _place(node, seller, quote, "r-quoted") == placed  # The record replays.
        assert await node.balances(seller) == (90, 10)
    finally:
        await node.stop()
    node = await _node(store, DEARER, monkeypatch)
    try:
        version = await store.stream_version(f"account-{seller}")
        with pytest.raises(errors.FailedPrecondition) as caught:
            await _place(node, seller, quote, "r-stale")
        assert caught.value.reason == errors.FEE_SCHEDULE_CHANGED
        # ceil(1000 * 80 / 10000) + 3 = 11, from schedule 2.
        assert dict(caught.value.metadata) == {"schedule_version": "2", "fee_minor": "11"}
        assert await store.stream_version(f"account-{seller}") == version  # Nothing held.
        assert await node.balances(seller) == (90, 10)
        fresh = await _quote(node, OrderSide.SELL, 10, 100)
        assert fresh == OrderFeeQuote(11, 2)
        await _place(node, seller, fresh, "r-fresh")
        assert await node.balances(seller) == (80, 20)
    finally:
        await node.stop()


@pytest.mark.parametrize(
    ("restarted_as", "placed"),
    [(DEARER, False), (SLOWER, True)],
    ids=["fees-changed", "window-changed"],
)
async def test_recovery_places_a_held_order_only_under_its_quoted_schedule(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, restarted_as: Market, *, placed: bool
) -> None:
    """Held with a quote, then a restart: placed if the schedule stayed, else rejected, released."""
    node = await _node(store, market_node.PTS_CNY, monkeypatch)
    try:
        seller = await _seller(node)
        quote = await _quote(node, OrderSide.SELL, 10, 100)
        request_id = f"r-{uuid.uuid4().hex[:6]}"
        request, order = _order(seller, quote, request_id)
        # The account step alone, as a server that stopped before the market step leaves it.
        await node.accounts.ask(seller, Decide(placement.start(ACME.caller, order).command))
        assert await node.balances(seller) == (90, 10)
    finally:
        await node.stop()
    node = await _node(store, restarted_as, monkeypatch)  # Recovery runs before it returns.
    try:
        market = [codec.decode(e) for e in await store.read_stream("market-PTS-CNY")]
        outcome = [e for e in market if getattr(e, "order_id", "") == order.order_id]
        if placed:
            assert [type(e) for e in outcome] == [OrderPlaced]
            assert await node.balances(seller) == (90, 10)
            # The client's retry (quote and all) finds the request recovery recorded.
            retried = await node.market.place_order(ACME, request_of(request), order)
            assert retried.order.order_id == order.order_id
        else:
            assert [(type(e), getattr(e, "reason", "")) for e in outcome] == [
                (OrderRejected, errors.FEE_SCHEDULE_CHANGED)
            ]
            assert await node.balances(seller) == (100, 0)  # Released: nothing stays held.
            with pytest.raises(errors.FailedPrecondition) as caught:
                await node.market.place_order(ACME, request_of(request), order)
            assert caught.value.reason == errors.FEE_SCHEDULE_CHANGED
        assert await node.balances(seller) == ((90, 10) if placed else (100, 0))
    finally:
        await node.stop()
