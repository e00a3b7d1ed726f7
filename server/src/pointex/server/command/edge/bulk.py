"""How ExecuteBulk splits a message into segments and reports a command's failure."""

from __future__ import annotations

from collections.abc import Sequence

from pointex.server.command.edge.transfer_rpcs import TRANSFER_RPCS
from pointex.server.grpc_edge.status import map_exception, to_status
from pointex.v1 import command_service_pb2 as pb

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
