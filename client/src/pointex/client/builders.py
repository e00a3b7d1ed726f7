"""Request messages from plain arguments: enum names, request ids and bulk commands.

Both clients build their requests here, so the sync and the asyncio client send the same
bytes for the same call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Final, Literal

from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

AccountKindName = Literal["member", "merchant"]
SideName = Literal["buy", "sell"]
TimeInForceName = Literal["gtc", "ioc"]
OperationName = Literal["transfer", "redeem", "market_buy", "market_sell"]

_KINDS: Final[Mapping[str, common_pb2.AccountKind.ValueType]] = {
    "member": common_pb2.ACCOUNT_KIND_MEMBER,
    "merchant": common_pb2.ACCOUNT_KIND_MERCHANT,
}
_SIDES: Final[Mapping[str, common_pb2.OrderSide.ValueType]] = {
    "buy": common_pb2.ORDER_SIDE_BUY,
    "sell": common_pb2.ORDER_SIDE_SELL,
}
_TIMES_IN_FORCE: Final[Mapping[str, common_pb2.TimeInForce.ValueType]] = {
    "gtc": common_pb2.TIME_IN_FORCE_GTC,
    "ioc": common_pb2.TIME_IN_FORCE_IOC,
}
_OPERATIONS: Final[Mapping[str, common_pb2.LimitedOperation.ValueType]] = {
    "transfer": common_pb2.LIMITED_OPERATION_TRANSFER,
    "redeem": common_pb2.LIMITED_OPERATION_REDEEM,
    "market_buy": common_pb2.LIMITED_OPERATION_MARKET_BUY,
    "market_sell": common_pb2.LIMITED_OPERATION_MARKET_SELL,
}


def new_request_id() -> str:
    """Return a fresh request id: a random UUID, as the contract recommends."""
    return str(uuid.uuid4())


def account_kind(name: AccountKindName) -> common_pb2.AccountKind.ValueType:
    """Return the AccountKind of "member" or "merchant"."""
    return _KINDS[name]


def order_side(name: SideName) -> common_pb2.OrderSide.ValueType:
    """Return the OrderSide of "buy" or "sell"."""
    return _SIDES[name]


def time_in_force(name: TimeInForceName) -> common_pb2.TimeInForce.ValueType:
    """Return the TimeInForce of "gtc" or "ioc"."""
    return _TIMES_IN_FORCE[name]


def transaction_limit(
    operation: OperationName,
    *,
    account_kind: AccountKindName | None = None,
    tier: str = "",
    min_points: int = 0,
    max_points: int = 0,
    step_points: int = 0,
    daily_max_points: int = 0,
    yearly_max_points: int = 0,
) -> common_pb2.TransactionLimit:
    """Return a program limit of `operation` (every bound 0: no bound).

    The bounds are what one command may carry (`min_points`, `max_points`, `step_points`)
    and what all of an account's commands may in a rolling day and in a calendar year.
    `account_kind` and `tier` narrow it to those accounts (None, "": every one).
    """
    return common_pb2.TransactionLimit(
        operation=_OPERATIONS[operation],
        account_kind=_KINDS[account_kind] if account_kind else common_pb2.ACCOUNT_KIND_UNSPECIFIED,
        tier=tier,
        min_points=min_points,
        max_points=max_points,
        step_points=step_points,
        daily_max_points=daily_max_points,
        yearly_max_points=yearly_max_points,
    )


def transfer_fee(
    fee_account_id: str, *, flat_points: int = 0, per_mille: int = 0
) -> common_pb2.TransferFee:
    """Return the fee schedule of member transfers, for `set_program_rules(transfer_fee=...)`.

    A transfer of `amount` points then pays `flat_points + ceil(amount * per_mille / 1000)`
    more, credited to the MERCHANT account `fee_account_id`; a transfer from that account
    pays none. Both parts 0 (with no account) is no fee.
    """
    return common_pb2.TransferFee(
        flat_points=flat_points, per_mille=per_mille, fee_account_id=fee_account_id
    )


def expiry_policy(
    lifetime: dt.timedelta, notice: dt.timedelta | None = None
) -> common_pb2.ExpiryPolicy:
    """Return an expiry policy, for `set_program_rules(expiry=...)`.

    Points a member earns from then on lapse `lifetime` after they were earned (whole seconds,
    1 second to 36,600 days); `notice` before (shorter than `lifetime`), the member is told
    they lapse soon. A change never alters points earned before it.
    """
    policy = common_pb2.ExpiryPolicy()
    policy.lifetime.FromTimedelta(lifetime)
    if notice is not None:
        policy.notice.FromTimedelta(notice)
    return policy


def issue(
    merchant_account_id: str,
    member_account_id: str,
    amount_points: int,
    reason: str = "",
    *,
    request_id: str | None = None,
    activates_at: dt.datetime | None = None,
) -> pb.BulkCommand:
    """Return a bulk IssuePoints command (a merchant rewards a member).

    With `activates_at` (timezone-aware), the points are pending until then (pending earn).
    """
    request = pb.IssuePointsRequest(
        request_id=request_id or new_request_id(),
        merchant_account_id=merchant_account_id,
        member_account_id=member_account_id,
        amount_points=amount_points,
        reason=reason,
    )
    if activates_at is not None:
        if activates_at.tzinfo is None:
            msg = "activates_at must be timezone-aware"
            raise ValueError(msg)
        request.activates_at.FromDatetime(activates_at)
    return pb.BulkCommand(issue_points=request)


def redeem(
    member_account_id: str,
    merchant_account_id: str,
    amount_points: int,
    reason: str = "",
    *,
    request_id: str | None = None,
) -> pb.BulkCommand:
    """Return a bulk RedeemPoints command (a member spends at a merchant)."""
    return pb.BulkCommand(
        redeem_points=pb.RedeemPointsRequest(
            request_id=request_id or new_request_id(),
            member_account_id=member_account_id,
            merchant_account_id=merchant_account_id,
            amount_points=amount_points,
            reason=reason,
        )
    )


def transfer(
    from_account_id: str,
    to_account_id: str,
    amount_points: int,
    memo: str = "",
    *,
    request_id: str | None = None,
    fee_quote: common_pb2.FeeQuote | None = None,
) -> pb.BulkCommand:
    """Return a bulk TransferPoints command (a member gives to another member).

    With `fee_quote` (a `quote_transfer` reply's `quote`), the transfer pays exactly that fee,
    or is refused with FEE_SCHEDULE_CHANGED if the fee schedule changed since the quote.
    """
    return pb.BulkCommand(
        transfer_points=pb.TransferPointsRequest(
            request_id=request_id or new_request_id(),
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            amount_points=amount_points,
            memo=memo,
            fee_quote=fee_quote,
        )
    )


def bulk_request_id(command: pb.BulkCommand) -> str:
    """Return the request id inside a bulk command, giving it a fresh one if it has none."""
    kind = command.WhichOneof("command")
    if kind is None:
        return ""
    request = getattr(command, kind)
    if not request.request_id:
        request.request_id = new_request_id()
    return str(request.request_id)
