"""The market's steps asked of another command server over real gRPC on loopback.

A PeerServicer answers with the real MarketPeerSteps over a stand-in market (which records
what it is asked to take); MarketPeers asks it as a trade's driver, an order's holder and a
cancellation do. What is proved: a trade's step arrives whole (its kind, its trade events
as the codec decodes them, its unit's records, the refund's caller) and its answer comes
back; each failure comes back as the exception the step raised there (the trade changed
first, a refusal with its reason and metadata, an unknown commit outcome), and a step asked
of a server the entity moved from is asked again of the owner named next; a release and an
order's placement arrive with their terms (the fee quote and the request's digest too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from pointex.client.errors import from_rpc_error
from pointex.cluster.v1 import peer_pb2, peer_pb2_grpc
from pointex.server.command.app.idempotency import Request, recorded_reply
from pointex.server.command.app.trade_processes import StepKind, Taken, TradeConflict, TradeStep
from pointex.server.command.edge.market_peers import MarketPeers, MarketPeerSteps
from pointex.server.command.edge.market_replies import ProtoMarketHandlers
from pointex.server.command.edge.peer_servicer import PeerServicer
from pointex.server.domain import errors, streams
from pointex.server.domain import trade as trade_model
from pointex.server.domain.commands import ReleaseBuy, ReleasePoints
from pointex.server.domain.lots import Lot
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.market_events import PaymentConfirmed, TradeCreated
from pointex.server.domain.values import (
    Caller,
    Instant,
    Money,
    OrderFeeQuote,
    OrderSide,
    Role,
    TimeInForce,
)
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import CommitOutcomeUnknown, StreamAppend, WrongExpectedVersion
from pointex.server.grpc_edge.interceptors import EdgeInterceptor
from pointex.server.grpc_edge.peer import PeerClient
from pointex.v1 import command_service_pb2 as pb

CREATED = TradeCreated(
    "t1", "PTS-CNY", "ord-b", "ord-s", "buyer", "seller", OrderSide.SELL, 4, 100, "CNY",
    400, 4, 0, 404, 400, Instant(1_700_000_900_000),
)  # fmt: skip
TRADE = dataclasses.replace(trade_model.evolve(None, CREATED), version=3)
CONFIRMED = PaymentConfirmed(
    "t1", "sandbox", "pay-1", "evt-1", Money(404, "CNY"), Instant(1_700_000_100_000), "k1",
    late=False, lots=(Lot(Instant(1), Instant(2), 4),),
)  # fmt: skip
ORDER = PlaceOrder(
    "ord-key", "seller", "PTS-CNY", OrderSide.SELL, 10, 100, TimeInForce.GTC, "mine",
    OrderFeeQuote(3, 2),
)  # fmt: skip


class StandIn:
    """The market and trade processes of the asked server: records what it takes."""

    def __init__(self) -> None:
        """Take every step at position 42 unless told to fail with `error`."""
        self.processes = self
        self.asked: list[tuple[Any, ...]] = []
        self.error: BaseException | None = None
        self.address = ""  # Where the peer server over it listens.

    def _answer(self, *asked: Any) -> None:
        self.asked.append(asked)
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    async def take_for_peer(
        self, trade_id: str, version: int, step: TradeStep, record: tuple[StreamAppend, ...]
    ) -> Taken:
        """Take a trade's step."""
        self._answer(trade_id, version, step, record)
        return Taken(42, moved=False)

    async def release_here(self, release: ReleasePoints | ReleaseBuy) -> int:
        """Make a release."""
        self._answer(release)
        return 43

    async def place_in_market(
        self, order: PlaceOrder, request: Request, principal_id: str
    ) -> tuple[pb.PlaceOrderResponse, int]:
        """Place an order."""
        self._answer(order, request, principal_id)
        return pb.PlaceOrderResponse(trade_count=1), 44


@pytest.fixture
async def asked() -> AsyncIterator[tuple[StandIn, MarketPeers, list[str]]]:
    """A peer server over the stand-in, and a client of it; yields both and the looks asked."""
    stand_in = StandIn()

    async def no_credit(transfer_id: str) -> int:
        raise AssertionError(f"no credit is asked here ({transfer_id})")

    servicer = PeerServicer(no_credit, MarketPeerSteps(cast("ProtoMarketHandlers", stand_in)))
    server = grpc.aio.server(interceptors=(EdgeInterceptor(None),))
    peer_pb2_grpc.add_PeerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stand_in.address = f"127.0.0.1:{port}"
    looks: list[str] = []

    async def owner_of(_range: int, moved_from: str) -> str:
        looks.append(moved_from)
        return f"127.0.0.1:{port}"

    client = PeerClient(owner_of)
    yield stand_in, MarketPeers(client), looks
    await client.close()
    await server.stop(None)


async def test_a_trade_step_arrives_whole_and_its_answer_comes_back(
    asked: tuple[StandIn, MarketPeers, list[str]],
) -> None:
    """Kind, decoded trade events, the unit's records and the caller: as the driver sent them."""
    stand_in, peers, _ = asked
    record = recorded_reply(
        streams.request("sandbox:evt-1"), "sandbox", Request("r1", "ConfirmPayment", b"d"), b"x"
    )
    step = TradeStep(StepKind.COLLECT_FROM_SELLER, (CONFIRMED,))
    taken = await peers.trade_step(streams.account("seller"), TRADE, step, (record,))
    assert taken == Taken(42, moved=False)
    refund = TradeStep(StepKind.TAKE_BACK_FROM_BUYER, (), Caller(Role.PARTNER, "acme"))
    await peers.trade_step(streams.account("buyer"), TRADE, refund, ())
    assert stand_in.asked == [("t1", 3, step, (record,)), ("t1", 3, refund, ())]


async def test_a_failed_trade_step_comes_back_as_what_it_raised_there(
    asked: tuple[StandIn, MarketPeers, list[str]],
) -> None:
    """The trade changed, a refusal, an unknown outcome; a moved owner is asked again."""
    stand_in, peers, looks = asked
    step = TradeStep(StepKind.DELIVER_TO_BUYER, ())
    buyer = streams.account("buyer")
    stand_in.error = TradeConflict("t1")
    with pytest.raises(WrongExpectedVersion) as changed:
        await peers.trade_step(buyer, TRADE, step, ())
    assert changed.value.stream_id == streams.trade("t1")
    stand_in.error = errors.FailedPrecondition(errors.ACCOUNT_CLOSED, "closed", account_id="buyer")
    with pytest.raises(errors.FailedPrecondition) as refused:
        await peers.trade_step(buyer, TRADE, step, ())
    assert (refused.value.reason, dict(refused.value.metadata)) == (
        errors.ACCOUNT_CLOSED,
        {"account_id": "buyer"},
    )
    stand_in.error = CommitOutcomeUnknown("lost")
    with pytest.raises(CommitOutcomeUnknown):
        await peers.trade_step(buyer, TRADE, step, ())
    looks.clear()
    stand_in.error = Elsewhere(buyer)
    assert await peers.trade_step(buyer, TRADE, step, ()) == Taken(42, moved=False)
    assert len(looks) == 2
    assert looks[0] == ""
    assert looks[1]  # The second look names the address that said it moved.


async def test_a_release_and_a_placement_arrive_with_their_terms(
    asked: tuple[StandIn, MarketPeers, list[str]],
) -> None:
    """A release of each side, and an order with its fee quote and request, answered."""
    stand_in, peers, _ = asked
    sell = ReleasePoints("seller", "ord-s", "", 6)
    buy = ReleaseBuy("buyer", "ord-b", "t1", 3)
    assert await peers.release(sell) == 43
    assert await peers.release(buy) == 43
    request = Request("req-1", "PlaceOrder", b"digest")
    reply, position = await peers.place(ORDER, request, "acme")
    assert (reply.trade_count, position) == (1, 44)
    assert stand_in.asked == [(sell,), (buy,), (ORDER, request, "acme")]


async def test_a_malformed_step_or_release_is_refused_naming_its_field(
    asked: tuple[StandIn, MarketPeers, list[str]],
) -> None:
    """No kind, an unknown role, another trade's event, no side: INVALID_FIELD, nothing taken."""
    stand_in, _, _ = asked
    confirmed = codec.encode(dataclasses.replace(CONFIRMED, trade_id="t2"))
    other_trade = peer_pb2.EncodedEvent(
        type=confirmed.type, schema_version=confirmed.schema_version, data=confirmed.data
    )
    async with grpc.aio.insecure_channel(stand_in.address) as channel:
        stub = peer_pb2_grpc.PeerServiceStub(channel)
        for request, field in (
            (peer_pb2.TakeTradeStepRequest(trade_id="t1", trade_version=3), "kind"),
            (
                peer_pb2.TakeTradeStepRequest(
                    trade_id="t1",
                    trade_version=3,
                    kind=peer_pb2.TRADE_STEP_KIND_TAKE_BACK_FROM_BUYER,
                    caller_role="KING",
                ),
                "caller_role",
            ),
            (
                peer_pb2.TakeTradeStepRequest(
                    trade_id="t1",
                    trade_version=3,
                    kind=peer_pb2.TRADE_STEP_KIND_COLLECT_FROM_SELLER,
                    trade_events=[other_trade],
                ),
                "trade_events",
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.TakeTradeStep(request, timeout=5)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
            assert from_rpc_error(refused.value).reason == "INVALID_FIELD", field
        release = peer_pb2.ReleaseHeldRequest(account_id="a", order_id="o", quantity_points=1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReleaseHeld(release, timeout=5)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(refused.value).reason == "INVALID_FIELD"
    assert stand_in.asked == []
