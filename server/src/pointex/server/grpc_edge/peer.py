"""What command servers ask each other: the steps of a process on another server's account.

With the slice ranges split across command servers (docs/scale-out.md), a transfer is driven
by the owner of its source, and its credit is taken by the owner of the destination
(command/app/owners.py). The driver asks it with `pointex.cluster.v1.Peer/TakeCredit`: the
request is the transfer's id (a `google.protobuf.StringValue`), the answer the credit's
position (an `Int64Value`), and a refusal comes back as any call's status does (the
ErrorInfo reason of the credit's DomainError, ABORTED / CONCURRENT_MODIFICATION when no
credit is due any more, UNAVAILABLE when the server cannot take it now), which `PeerClient`
turns back into the exception the driver handles.

The service is not in the public API and carries no bearer token: it takes only the step the
transfer's record says is due, which the process takes anyway, so a caller cannot make it do
anything else. Like the forwarding hop, it runs on the cluster's private network.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from google.protobuf import wrappers_pb2

from pointex.client.errors import from_rpc_error
from pointex.server import limits
from pointex.server.domain import errors, streams
from pointex.server.eventstore.port import StoreUnavailable, WrongExpectedVersion
from pointex.server.grpc_edge.forwarding import PeerChannels
from pointex.server.overload import Overloaded
from pointex.server.slices import range_of

SERVICE: Final = "pointex.cluster.v1.Peer"
TAKE_CREDIT: Final = f"/{SERVICE}/TakeCredit"

# The DomainError class of each status a refusal comes back with.
_REFUSALS: Final[dict[grpc.StatusCode, type[errors.DomainError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}


def peer_service(
    take_credit: Callable[[str], Awaitable[int]],
) -> grpc.GenericRpcHandler[Any, Any]:
    """Return the handler of the Peer service, taking credits with `take_credit`."""

    async def credit(request: wrappers_pb2.StringValue, _context: Any) -> wrappers_pb2.Int64Value:
        return wrappers_pb2.Int64Value(value=await take_credit(request.value))

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "TakeCredit": grpc.unary_unary_rpc_method_handler(
                credit,
                request_deserializer=wrappers_pb2.StringValue.FromString,
                response_serializer=wrappers_pb2.Int64Value.SerializeToString,
            )
        },
    )


class PeerClient:
    """Ask the owner of an account to take a step on it, over gRPC."""

    def __init__(self, owner_of: Callable[[int], Awaitable[str]]) -> None:
        """Find a slice range's owner's address with `owner_of` ("" when none is known)."""
        self._owner_of = owner_of
        self._channels = PeerChannels()

    async def credit(self, account_id: str, transfer_id: str) -> int:
        """Have the owner of `account_id` take the credit due on it; return its position.

        Raises the credit's refusal (a DomainError), WrongExpectedVersion on the transfer's
        stream when no credit is due any more, Overloaded when the owner is too busy to take
        it now, or StoreUnavailable when no owner answers.
        """
        address = await self._owner_of(range_of(streams.account(account_id)))
        if not address:
            raise StoreUnavailable(f"no command server owns account {account_id} now")
        take = self._channels.to(address).unary_unary(
            TAKE_CREDIT,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.Int64Value.FromString,
        )
        try:
            answer = await take(
                wrappers_pb2.StringValue(value=transfer_id), timeout=limits.peer_call_s
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, transfer_id) from error
        return int(answer.value)

    async def close(self) -> None:
        """Close the channels to the other servers."""
        await self._channels.close()


def _refusal(error: grpc.aio.AioRpcError, transfer_id: str) -> Exception:
    """Return the exception a failed ask stands for, as the driver handles it."""
    failed = from_rpc_error(error)
    refusal = _REFUSALS.get(error.code())
    if refusal is not None and failed.reason:
        return refusal(failed.reason, error.details() or "", **failed.metadata)
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and failed.reason:
        # The owner is busy (its mailbox or commit queue full): retried as a step is.
        return Overloaded(failed.reason, error.details() or "", failed.retry_delay_ms or 0)
    if error.code() == grpc.StatusCode.ABORTED:
        stream = streams.transfer(transfer_id)
        return WrongExpectedVersion(stream, -1, -1)
    return StoreUnavailable(f"the credit of {transfer_id} was not taken: {error.details()}")
