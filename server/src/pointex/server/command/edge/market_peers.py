"""The market's steps asked of, and taken for, the cluster's other command servers.

With the slice ranges split across command servers (docs/scale-out.md), an order is held by
the owner of its account and placed by the owner of its market; a trade is driven by the
owner of its market, and its steps on accounts are taken by their owners; a release goes to
the account's owner (command/app/trade_processes.py, market_handlers.py). `MarketPeers` asks
those steps over PeerService (protos/pointex/cluster/v1/peer.proto), one call each, and
`MarketPeerSteps` takes them for the servers that ask (command/edge/peer_servicer.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from google.protobuf.message import DecodeError

from pointex.cluster.v1 import peer_pb2
from pointex.server.command.app.idempotency import Request
from pointex.server.command.app.trade_processes import (
    StepKind,
    Taken,
    TradeConflict,
    TradeProcesses,
    TradeStep,
)
from pointex.server.command.edge.market_replies import (
    ProtoMarketHandlers,
    order_of,
    place_request_of,
)
from pointex.server.domain import streams
from pointex.server.domain.commands import ReleaseBuy, ReleasePoints
from pointex.server.domain.market_commands import PlaceOrder
from pointex.server.domain.trade import Trade
from pointex.server.domain.values import Caller, Role
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore import codec
from pointex.server.eventstore.codec import UnknownEventType
from pointex.server.eventstore.port import NewEvent, StreamAppend, WrongExpectedVersion
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.peer import PeerClient
from pointex.server.grpc_edge.status import InvalidRequest, OwnerUnavailable
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

_INVALID = "INVALID_FIELD"


def _encoded(events: Iterable[NewEvent]) -> list[peer_pb2.EncodedEvent]:
    return [
        peer_pb2.EncodedEvent(
            type=e.type, schema_version=e.schema_version, data=e.data, metadata=e.metadata
        )
        for e in events
    ]


def _decoded(events: Iterable[peer_pb2.EncodedEvent]) -> tuple[NewEvent, ...]:
    return tuple(NewEvent(e.type, e.schema_version, e.data, e.metadata) for e in events)


class MarketPeers:
    """Ask the owners of other servers' accounts and markets for the market's steps."""

    def __init__(self, peer: PeerClient) -> None:
        """Make the calls with `peer`, at the owner of the stream each step writes."""
        self._peer = peer

    async def trade_step(
        self, stream_id: str, trade: Trade, step: TradeStep, record: tuple[StreamAppend, ...]
    ) -> Taken:
        """Have the owner of `stream_id` take `step` of `trade` (see TradePeers.trade_step)."""
        caller = step.caller
        request = peer_pb2.TakeTradeStepRequest(
            trade_id=trade.trade_id,
            trade_version=trade.version,
            kind=peer_pb2.TradeStepKind.Value(f"TRADE_STEP_KIND_{step.kind.value}"),
            trade_events=_encoded(codec.encode(e) for e in step.events),
            records=[
                peer_pb2.EncodedAppend(
                    stream_id=a.stream_id,
                    expected_version=a.expected_version,
                    events=_encoded(a.events),
                )
                for a in record
            ],
            caller_role=caller.role.value if caller is not None else "",
            caller_partner_id=caller.partner_id if caller is not None else "",
        )
        response = await self._peer.call(
            stream_id, lambda stub, timeout: stub.TakeTradeStep(request, timeout=timeout)
        )
        return Taken(response.position, response.moved)

    async def release(self, release: ReleasePoints | ReleaseBuy) -> int:
        """Have the owner of the release's account make it once; return its position (0: made)."""
        if isinstance(release, ReleasePoints):
            side, quantity = common_pb2.ORDER_SIDE_SELL, release.amount_points
        else:
            side, quantity = common_pb2.ORDER_SIDE_BUY, release.quantity_points
        request = peer_pb2.ReleaseHeldRequest(
            account_id=release.account_id,
            order_id=release.order_id,
            trade_id=release.trade_id,
            side=side,
            quantity_points=quantity,
        )
        response = await self._peer.call(
            streams.account(release.account_id),
            lambda stub, timeout: stub.ReleaseHeld(request, timeout=timeout),
        )
        return response.position

    async def place(
        self, order: PlaceOrder, request: Request, principal_id: str
    ) -> tuple[pb.PlaceOrderResponse, int]:
        """Have the owner of the order's market place it (see market_handlers.PlaceElsewhere)."""
        placing = peer_pb2.PlaceHeldOrderRequest(
            order=place_request_of(order),
            order_id=order.order_id,
            request_id=request.request_id,
            digest=request.digest,
            principal_id=principal_id,
        )
        response = await self._peer.call(
            streams.market(order.market_id),
            lambda stub, timeout: stub.PlaceHeldOrder(placing, timeout=timeout),
        )
        return response.reply, response.position


class MarketPeerSteps:
    """Take the market's steps other servers ask of this one."""

    def __init__(self, market: ProtoMarketHandlers) -> None:
        """Take them through `market` and its trade processes."""
        self._market = market
        self._processes: TradeProcesses = market.processes

    async def trade_step(self, request: peer_pb2.TakeTradeStepRequest) -> Taken:
        """Take a trade's step here, as the trade's driver decided it."""
        step = _step_of(request)
        record = tuple(
            StreamAppend(a.stream_id, a.expected_version, _decoded(a.events))
            for a in request.records
        )
        with _as_status():
            try:
                return await self._processes.take_for_peer(
                    request.trade_id, request.trade_version, step, record
                )
            except TradeConflict as conflict:
                raise WrongExpectedVersion(streams.trade(request.trade_id), -1, -1) from conflict

    async def release(self, request: peer_pb2.ReleaseHeldRequest) -> int:
        """Make a release on an account here, once; return its position (0: made already)."""
        convert.identifier("account_id", request.account_id)
        convert.identifier("order_id", request.order_id)
        convert.amount("quantity_points", request.quantity_points)
        convert.order_side(request.side)
        release: ReleasePoints | ReleaseBuy
        if request.side == common_pb2.ORDER_SIDE_SELL:
            release = ReleasePoints(
                request.account_id, request.order_id, request.trade_id, request.quantity_points
            )
        else:
            release = ReleaseBuy(
                request.account_id, request.order_id, request.trade_id, request.quantity_points
            )
        with _as_status():
            return await self._processes.release_here(release)

    async def place(
        self, request: peer_pb2.PlaceHeldOrderRequest
    ) -> tuple[pb.PlaceOrderResponse, int]:
        """Place a held order in its market here; return the reply and its position."""
        order = order_of(request.order, convert.identifier("order_id", request.order_id))
        placing = Request(request.request_id, "PlaceOrder", request.digest)
        with _as_status():
            return await self._market.place_in_market(order, placing, request.principal_id)


def _step_of(request: peer_pb2.TakeTradeStepRequest) -> TradeStep:
    """Return the step a TakeTradeStep request names; InvalidRequest when it names none."""
    convert.identifier("trade_id", request.trade_id)
    if request.kind == peer_pb2.TRADE_STEP_KIND_UNSPECIFIED:
        raise InvalidRequest(_INVALID, "kind", "a trade step's kind is required")
    kind_name = peer_pb2.TradeStepKind.Name(request.kind).removeprefix("TRADE_STEP_KIND_")
    caller = None
    if request.caller_role:
        if request.caller_role not in Role.__members__:
            raise InvalidRequest(_INVALID, "caller_role", "not a role's name")
        caller = Caller(Role(request.caller_role), request.caller_partner_id)
    if StepKind(kind_name) is StepKind.TAKE_BACK_FROM_BUYER and caller is None:
        raise InvalidRequest(_INVALID, "caller_role", "a refund's step names who asked")
    try:
        events = tuple(codec.decode(e) for e in _decoded(request.trade_events))
    except (UnknownEventType, DecodeError) as error:
        raise InvalidRequest(_INVALID, "trade_events", f"not a trade event: {error}") from error
    if not all(getattr(e, "trade_id", None) == request.trade_id for e in events):
        raise InvalidRequest(_INVALID, "trade_events", "an event of another trade")
    return TradeStep(StepKind(kind_name), events, caller)


@contextlib.contextmanager
def _as_status() -> Iterator[None]:
    """Turn an entity that is not here (its range moved) into OWNER_UNAVAILABLE."""
    try:
        yield
    except Elsewhere as moved:
        raise OwnerUnavailable(f"{moved.stream_id} is not owned here now") from moved
