"""Feed events of transfers that pay a fee, for the query side's tests.

Built on `tests.feed_events.Log`, in the orders the command server writes them (events.proto):

- one unit (every account decided at once): PointsDebited, PointsCredited (destination),
  PointsCredited (kind FEE, the fee account), TransferInitiated, TransferCompleted;
- step by step: TransferInitiated, PointsDebited, PointsCredited (destination),
  TransferCredited, then PointsCredited (kind FEE) or, when the fee account refuses the fee,
  PointsReturned (kind FEE) on the source, then TransferCompleted (with the refusal's reason);
- a destination that refuses: TransferInitiated, PointsDebited, PointsReturned (the points
  and the fee), TransferCompensated.
"""

from __future__ import annotations

from dataclasses import dataclass

from pointex.v1 import common_pb2, errors_pb2, events_pb2
from tests.feed_events import Log

TRANSFER = common_pb2.TRANSFER_KIND_TRANSFER
FEE = common_pb2.TRANSFER_KIND_FEE


@dataclass(frozen=True)
class FeeTransfer:
    """A member's transfer of `amount` paying `fee` to `fee_account`."""

    source: str
    target: str
    fee_account: str
    amount: int
    fee: int


def transfer_fee(flat: int, per_mille: int, account: str) -> common_pb2.TransferFee:
    """Return a fee schedule: flat + ceil(amount * per_mille / 1000), paid to `account`."""
    return common_pb2.TransferFee(flat_points=flat, per_mille=per_mille, fee_account_id=account)


def rules_set(
    log: Log,
    fee: common_pb2.TransferFee | None = None,
    *limits: common_pb2.TransactionLimit,
) -> events_pb2.Event:
    """ProgramRulesSet on program-main with `fee` (None: no fee) and `limits`."""
    rules = common_pb2.ProgramRules(limits=limits)
    if fee is not None:
        rules.transfer_fee.CopyFrom(fee)
    return log.event("program-main", "program_rules_set", events_pb2.ProgramRulesSet(rules=rules))


def _initiated(log: Log, t: FeeTransfer, transfer_id: str, source_after: int) -> events_pb2.Event:
    return log.event(
        f"transfer-{transfer_id}",
        "transfer_initiated",
        events_pb2.TransferInitiated(
            transfer_id=transfer_id,
            kind=TRANSFER,
            from_account_id=t.source,
            to_account_id=t.target,
            amount_points=t.amount,
            from_available_points=source_after,
            fee_points=t.fee,
            fee_account_id=t.fee_account if t.fee else "",
        ),
    )


def _debited(log: Log, t: FeeTransfer, transfer_id: str, source_after: int) -> events_pb2.Event:
    return log.event(
        f"account-{t.source}",
        "points_debited",
        events_pb2.PointsDebited(
            account_id=t.source,
            transfer_id=transfer_id,
            kind=TRANSFER,
            counterparty_account_id=t.target,
            amount_points=t.amount,
            available_points=source_after,
            fee_points=t.fee,
        ),
    )


def _credited(
    log: Log, t: FeeTransfer, transfer_id: str, *, fee: bool, after: int
) -> events_pb2.Event:
    """The destination's credit of the points or, with `fee`, the fee account's of the fee."""
    account = t.fee_account if fee else t.target
    return log.event(
        f"account-{account}",
        "points_credited",
        events_pb2.PointsCredited(
            account_id=account,
            transfer_id=transfer_id,
            kind=FEE if fee else TRANSFER,
            counterparty_account_id=t.source,
            amount_points=t.fee if fee else t.amount,
            available_points=after,
        ),
    )


def _returned(
    log: Log, t: FeeTransfer, transfer_id: str, *, fee: bool, after: int
) -> events_pb2.Event:
    """The source's return of the fee alone (`fee`), or of the points and the fee."""
    return log.event(
        f"account-{t.source}",
        "points_returned",
        events_pb2.PointsReturned(
            account_id=t.source,
            transfer_id=transfer_id,
            kind=FEE if fee else TRANSFER,
            counterparty_account_id=t.fee_account if fee else t.target,
            amount_points=t.fee if fee else t.amount + t.fee,
            available_points=after,
        ),
    )


def _completed(log: Log, transfer_id: str, fee_refused_reason: int = 0) -> events_pb2.Event:
    payload = events_pb2.TransferCompleted(
        transfer_id=transfer_id,
        fee_refused_reason=fee_refused_reason,  # type: ignore[arg-type]
    )
    return log.event(f"transfer-{transfer_id}", "transfer_completed", payload)


def one_unit(
    log: Log, t: FeeTransfer, *, source_after: int, target_after: int, fee_after: int
) -> list[events_pb2.Event]:
    """A transfer paying its fee, decided in one unit: the five events of one commit."""
    transfer_id = f"t{log.position}"
    return [
        _debited(log, t, transfer_id, source_after),
        _credited(log, t, transfer_id, fee=False, after=target_after),
        _credited(log, t, transfer_id, fee=True, after=fee_after),
        _initiated(log, t, transfer_id, source_after),
        _completed(log, transfer_id),
    ]


def step_by_step(
    log: Log,
    t: FeeTransfer,
    *,
    source_after: int,
    target_after: int,
    fee_after: int | None,
) -> list[events_pb2.Event]:
    """A transfer paying its fee step by step; `fee_after` None: the fee account refuses it.

    A refused fee goes back to the source, whose available is then `source_after` + fee.
    """
    transfer_id = f"t{log.position}"
    events = [
        _initiated(log, t, transfer_id, source_after),
        _debited(log, t, transfer_id, source_after),
        _credited(log, t, transfer_id, fee=False, after=target_after),
        log.event(
            f"transfer-{transfer_id}",
            "transfer_credited",
            events_pb2.TransferCredited(transfer_id=transfer_id),
        ),
    ]
    if fee_after is not None:
        events.append(_credited(log, t, transfer_id, fee=True, after=fee_after))
        events.append(_completed(log, transfer_id))
        return events
    events.append(_returned(log, t, transfer_id, fee=True, after=source_after + t.fee))
    events.append(_completed(log, transfer_id, errors_pb2.ERROR_REASON_ACCOUNT_CLOSED))
    return events


def refused(log: Log, t: FeeTransfer, *, source_after: int) -> list[events_pb2.Event]:
    """A transfer paying a fee whose destination refuses it: the points and fee come back."""
    transfer_id = f"t{log.position}"
    back = source_after + t.amount + t.fee
    return [
        _initiated(log, t, transfer_id, source_after),
        _debited(log, t, transfer_id, source_after),
        _returned(log, t, transfer_id, fee=False, after=back),
        log.event(
            f"transfer-{transfer_id}",
            "transfer_compensated",
            events_pb2.TransferCompensated(transfer_id=transfer_id),
        ),
    ]
