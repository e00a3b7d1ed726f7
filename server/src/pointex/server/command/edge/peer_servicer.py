"""PeerService: the steps the cluster's other command servers ask of this one.

With the slice ranges split across command servers (docs/scale-out.md), the owner of a
transfer's source asks the owner of its destination to take the credit
(grpc_edge/peer.py asks; protos/pointex/cluster/v1/peer.proto). Each credit is taken by
`CommandHandlers.take_credit`, all of one call at once, and answered with its position or
with the status it ended with, as a bulk command's is. The market's steps (a trade's step on
an account or market here, an order's placement in a market here, a release on an account
here) are taken by command/edge/market_peers.py, one call each.

The service takes no credential (the auth table leaves it open): it only takes the step a
transfer's record says is due, which the process takes anyway. Like the forwarding hop, it
is meant for the cluster's private network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from pointex.cluster.v1 import peer_pb2, peer_pb2_grpc
from pointex.server import limits
from pointex.server.command.edge.bulk import bulk_error
from pointex.server.command.edge.market_peers import MarketPeerSteps
from pointex.server.elsewhere import Elsewhere
from pointex.server.grpc_edge.status import InvalidRequest, OwnerUnavailable

Context = grpc.aio.ServicerContext[peer_pb2.TakeCreditsRequest, peer_pb2.TakeCreditsResponse]


class PeerServicer(peer_pb2_grpc.PeerServiceServicer):
    """Take the credits other servers ask for, on this server's accounts."""

    def __init__(
        self,
        take_credit: Callable[[str], Awaitable[int]],
        market: MarketPeerSteps | None = None,
    ) -> None:
        """Take credits with `take_credit` (CommandHandlers.take_credit), the rest with `market`.

        Without `market` (a stand-in that takes credits only), the market's steps fail.
        """
        self._take_credit = take_credit
        self._market = market
        self.credits_taken = 0  # Since start, for the metrics: credits committed for others.
        self.market_steps_taken = 0  # Trade steps, placements and releases taken for others.

    async def TakeCredits(
        self, request: peer_pb2.TakeCreditsRequest, _: Context
    ) -> peer_pb2.TakeCreditsResponse:
        """Take every credit asked for, together; answer each one's position or status."""
        if len(request.transfer_ids) > limits.bulk_commands_max:
            raise InvalidRequest(
                "BULK_BATCH_TOO_LARGE",
                "transfer_ids",
                f"at most {limits.bulk_commands_max} a call",
            )
        ended = await asyncio.gather(
            *(self._take_credit(transfer_id) for transfer_id in request.transfer_ids),
            return_exceptions=True,
        )
        response = peer_pb2.TakeCreditsResponse()
        for outcome in ended:
            if isinstance(outcome, int):
                self.credits_taken += 1
                response.credits.add(position=outcome)
            elif isinstance(outcome, Elsewhere):  # Its range moved: the driver asks again.
                moved = OwnerUnavailable(f"{outcome.stream_id} is not owned here now")
                response.credits.add(error=bulk_error(moved))
            elif isinstance(outcome, Exception):
                response.credits.add(error=bulk_error(outcome))
            else:
                raise outcome  # Cancelled: the call ends as cancelled.
        return response

    async def TakeTradeStep(
        self, request: peer_pb2.TakeTradeStepRequest, _: object
    ) -> peer_pb2.TakeTradeStepResponse:
        """Take a trade's step on an account or the market here."""
        taken = await self._steps().trade_step(request)
        self.market_steps_taken += 1
        return peer_pb2.TakeTradeStepResponse(position=taken.position, moved=taken.moved)

    async def PlaceHeldOrder(
        self, request: peer_pb2.PlaceHeldOrderRequest, _: object
    ) -> peer_pb2.PlaceHeldOrderResponse:
        """Place an order held on another server's account in a market here."""
        reply, position = await self._steps().place(request)
        self.market_steps_taken += 1
        return peer_pb2.PlaceHeldOrderResponse(reply=reply, position=position)

    async def ReleaseHeld(
        self, request: peer_pb2.ReleaseHeldRequest, _: object
    ) -> peer_pb2.ReleaseHeldResponse:
        """Release what an order or a trade held on an account here, once."""
        position = await self._steps().release(request)
        self.market_steps_taken += 1
        return peer_pb2.ReleaseHeldResponse(position=position)

    def _steps(self) -> MarketPeerSteps:
        if self._market is None:
            raise OwnerUnavailable("this server takes no market step")
        return self._market
