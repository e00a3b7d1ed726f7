"""PeerService: the steps the cluster's other command servers ask of this one.

With the slice ranges split across command servers (docs/scale-out.md), the owner of a
transfer's source asks the owner of its destination to take the credit
(grpc_edge/peer.py asks; protos/pointex/cluster/v1/peer.proto). Each credit is taken by
`CommandHandlers.take_credit`, all of one call at once, and answered with its position or
with the status it ended with, as a bulk command's is.

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
from pointex.server.elsewhere import Elsewhere
from pointex.server.grpc_edge.status import InvalidRequest, OwnerUnavailable

Context = grpc.aio.ServicerContext[peer_pb2.TakeCreditsRequest, peer_pb2.TakeCreditsResponse]


class PeerServicer(peer_pb2_grpc.PeerServiceServicer):
    """Take the credits other servers ask for, on this server's accounts."""

    def __init__(self, take_credit: Callable[[str], Awaitable[int]]) -> None:
        """Take each credit with `take_credit` (CommandHandlers.take_credit)."""
        self._take_credit = take_credit
        self.credits_taken = 0  # Since start, for the metrics: credits committed for others.

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
