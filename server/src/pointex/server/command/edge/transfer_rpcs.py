"""The transfer RPCs (issue, redeem, transfer) as the servicer and ExecuteBulk share them.

A unary call and a bulk command of one kind read their request and build their reply with
the same functions, so that a bulk command is executed exactly as its unary RPC would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message

from pointex.client.positions import encode_global
from pointex.server.command.app.transfer_steps import TransferDone, TransferRequest
from pointex.server.domain.events import NEVER
from pointex.server.domain.values import TransferKind
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.auth import current_principal
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import errors_pb2


def issue_reply(
    done: TransferDone, reply: pb.IssuePointsResponse | None = None
) -> pb.IssuePointsResponse:
    """Return IssuePoints' reply for a completed issue, filled into `reply` if given."""
    reply = pb.IssuePointsResponse() if reply is None else reply
    return _filled(reply, done, "merchant_available_points")


def redeem_reply(
    done: TransferDone, reply: pb.RedeemPointsResponse | None = None
) -> pb.RedeemPointsResponse:
    """Return RedeemPoints' reply for a completed redemption, filled into `reply` if given."""
    reply = pb.RedeemPointsResponse() if reply is None else reply
    return _filled(reply, done, "member_available_points")


def transfer_reply(
    done: TransferDone, reply: pb.TransferPointsResponse | None = None
) -> pb.TransferPointsResponse:
    """Return TransferPoints' reply for a completed transfer, filled into `reply` if given."""
    reply = _filled(
        pb.TransferPointsResponse() if reply is None else reply, done, "from_available_points"
    )
    reply.fee_points = done.initiated.fee_points
    if done.fee_refused_reason:
        reply.fee_refused_reason = errors_pb2.ErrorReason.Value(
            f"ERROR_REASON_{done.fee_refused_reason}"
        )
    return reply


_Reply = TypeVar(
    "_Reply", pb.IssuePointsResponse, pb.RedeemPointsResponse, pb.TransferPointsResponse
)


def _filled(reply: _Reply, done: TransferDone, balance_field: str) -> _Reply:
    """Set what every transfer reply states, in place: a bulk reply is built in its response."""
    if done.position:  # 0 travels as an empty token (position_message).
        reply.position.token = encode_global(done.position)
    else:
        reply.position.SetInParent()
    reply.transfer_id = done.initiated.transfer_id
    # The source's balance after the debit, under the RPC's name for the source.
    setattr(reply, balance_field, done.initiated.from_available_points)
    return reply


@dataclass(frozen=True, slots=True)
class TransferRpc:
    """How one transfer RPC reads its request and builds its reply."""

    field: str  # the RPC's field in a BulkCommand
    kind: TransferKind
    source: str
    target: str
    # Builds the reply, or fills the one given (inside a bulk response).
    reply: Callable[[TransferDone, Any], Message]


ISSUE = TransferRpc(
    "issue_points", TransferKind.ISSUE, "merchant_account_id", "member_account_id", issue_reply
)
REDEEM = TransferRpc(
    "redeem_points", TransferKind.REDEEM, "member_account_id", "merchant_account_id", redeem_reply
)
TRANSFER = TransferRpc(
    "transfer_points", TransferKind.TRANSFER, "from_account_id", "to_account_id", transfer_reply
)
TRANSFER_RPCS = {rpc.field: rpc for rpc in (ISSUE, REDEEM, TRANSFER)}


def transfer_request(request: Any, rpc: TransferRpc) -> TransferRequest:
    """Validate a transfer RPC's request (the caller's, from the call's context)."""
    # Issue and redeem call their text "reason", a transfer calls it "memo".
    memo_field = "memo" if rpc.kind is TransferKind.TRANSFER else "reason"
    return TransferRequest(
        current_principal(),
        convert.request_id(request.request_id),
        rpc.kind,
        convert.identifier(rpc.source, getattr(request, rpc.source)),
        convert.identifier(rpc.target, getattr(request, rpc.target)),
        convert.amount("amount_points", request.amount_points),
        convert.text(memo_field, getattr(request, memo_field)),
        activates_at=(
            convert.activation("activates_at", request.activates_at)
            if rpc.kind is TransferKind.ISSUE and request.HasField("activates_at")
            else NEVER
        ),
        fee_quote=(
            convert.fee_quote("fee_quote", request.fee_quote)
            if rpc.kind is TransferKind.TRANSFER and request.HasField("fee_quote")
            else None
        ),
    )
