"""How ExecuteBulk splits a message into segments and reports a command's failure.

With the slice ranges split across command servers, a bulk command whose first account
another server owns is sent there: `place_elsewhere` sends each owner one ExecuteBulk
message of its commands, in the order sent, and their results come back in their places.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc

from pointex.server.command.edge.transfer_rpcs import TRANSFER_RPCS
from pointex.server.elsewhere import Elsewhere
from pointex.server.grpc_edge.forwarding import Forwarder
from pointex.server.grpc_edge.status import (
    OwnerUnavailable,
    hop_bulk_error,
    map_exception,
    to_status,
)
from pointex.v1 import command_service_pb2 as pb

_EXECUTE_BULK = "/pointex.v1.CommandService/ExecuteBulk"

BULK_RPCS = {
    "issue_points": "IssuePoints",
    "redeem_points": "RedeemPoints",
    "transfer_points": "TransferPoints",
    "mint_points": "MintPoints",
    "burn_points": "BurnPoints",
}
# The account each kind of bulk command takes its first step on (a transfer's is its source).
_FIRST_ACCOUNT_FIELDS = {
    "issue_points": "merchant_account_id",
    "redeem_points": "member_account_id",
    "transfer_points": "from_account_id",
    "mint_points": "merchant_account_id",
    "burn_points": "merchant_account_id",
}
assert _FIRST_ACCOUNT_FIELDS.keys() == BULK_RPCS.keys()

# A bulk command: its index in the message, which command it holds, and the command.
Bulk = tuple[int, str | None, pb.BulkCommand]


def segments(commands: Sequence[pb.BulkCommand]) -> list[list[Bulk]]:
    """Split a bulk message where a transfer and another command share a first account.

    Within a segment, transfers run as one batch (their debits told in order) and the
    other commands run one by one; segments run one after the other. Cutting where the two
    kinds meet on one account keeps such commands in the order sent.
    """
    segments: list[list[Bulk]] = [[]]
    firsts: dict[str, bool] = {}  # first account -> whether a transfer started there
    for index, command in enumerate(commands):
        which = command.WhichOneof("command")
        if which is not None:
            account = getattr(getattr(command, which), _FIRST_ACCOUNT_FIELDS[which])
            transfer = which in TRANSFER_RPCS
            if firsts.setdefault(account, transfer) is not transfer:
                segments.append([])
                firsts = {account: transfer}
        segments[-1].append((index, which, command))
    return segments


def bulk_error(error: Exception) -> pb.BulkError:
    """Return the BulkError of a failed command: the status its unary RPC would end with."""
    mapped = map_exception(error)
    status = to_status(error)
    result = pb.BulkError(code=status.code, message=status.message)
    if mapped is not None:
        result.reason = mapped.reason
        result.metadata.update(mapped.metadata)
        if mapped.retry_after_ms:
            result.retry_delay.FromMilliseconds(mapped.retry_after_ms)
    else:
        result.reason = "INTERNAL_ERROR"
    return result


async def place_elsewhere(
    forwarder: Forwarder,
    moved: Sequence[tuple[int, pb.BulkCommand, Elsewhere]],
    context: Any,
) -> dict[int, pb.BulkResult]:
    """Run bulk commands that reached other servers' accounts there; return each one's result.

    Each owner gets one ExecuteBulk message of its commands, in the order sent, as the
    caller (its metadata) and within its deadline. A command with no owner to go to, or
    whose owner does not answer, fails UNAVAILABLE / OWNER_UNAVAILABLE: nothing was done by
    this attempt, and the client retries it.
    """
    results: dict[int, pb.BulkResult] = {}
    by_owner: dict[str, tuple[dict[str, Any], list[tuple[int, pb.BulkCommand]]]] = {}
    for index, command, where in moved:
        try:
            address, options = await forwarder.placing(where, context)
        except OwnerUnavailable as error:
            results[index] = pb.BulkResult(index=index, error=bulk_error(error))
            continue
        by_owner.setdefault(address, (options, []))[1].append((index, command))

    async def at_owner(address: str, options: dict[str, Any], sent: list[tuple[int, Any]]) -> None:
        call = forwarder.channel(address).stream_stream(
            _EXECUTE_BULK,
            request_serializer=pb.ExecuteBulkRequest.SerializeToString,
            response_deserializer=pb.ExecuteBulkResponse.FromString,
        )(**options)
        try:
            await call.write(pb.ExecuteBulkRequest(commands=[command for _, command in sent]))
            await call.done_writing()
            response = await call.read()
        except grpc.aio.AioRpcError as error:
            for index, _ in sent:
                results[index] = pb.BulkResult(index=index, error=_hop_error(error))
            return
        answered = response.results if isinstance(response, pb.ExecuteBulkResponse) else ()
        for (index, _), result in zip(sent, answered, strict=False):
            result.index = index
            results[index] = result
        for index, _ in sent[len(answered) :]:  # The owner ended the stream short: not done.
            unanswered = OwnerUnavailable("the owner of the command's account did not answer it")
            results[index] = pb.BulkResult(index=index, error=bulk_error(unanswered))

    await asyncio.gather(*(at_owner(a, o, sent) for a, (o, sent) in by_owner.items()))
    return results


def _hop_error(error: grpc.aio.AioRpcError) -> pb.BulkError:
    """Return the BulkError of a command whose owner ended its message with `error`."""
    result = hop_bulk_error(error)
    if not result.reason:  # The owner was not reached: no status of its own came back.
        return bulk_error(OwnerUnavailable("the owner of the command's account is away"))
    return result
