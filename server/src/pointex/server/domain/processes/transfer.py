"""The transfer process (issue, redeem, transfer): debit, then credit or compensate.

A transfer's stream (`transfer-<id>`, the id being the request key) is its process record
and its idempotency record at once. Its steps, each an event committed with the account
step that goes with it:

  start       the destination is checked (nothing is written if it cannot take the points),
              then the source's PointsDebited commits with TransferInitiated     -> DEBITED
  Resumed     DEBITED: Credit (the destination's PointsCredited with TransferCompleted,
              or with TransferCredited when a fee is due                         -> CREDITED)
  refused     DEBITED: Compensate (the source's PointsReturned of the points and the fee,
              with TransferCompensated)
  Resumed     CREDITED: Credit (the fee account's PointsCredited of kind FEE, with
              TransferCompleted)
  refused     CREDITED: ReturnFee (the source's PointsReturned of kind FEE, with
              TransferCompleted naming why the fee account refused)
  any input   COMPLETED / COMPENSATED: Ended (the recorded outcome)

When every account's actor is loaded, the start commits the whole transfer as one unit
(the account events, then TransferInitiated with `completed` set): it is never open. The
functions that build each step's commands live here, so both paths build the same ones.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Protocol

from pointex.server.domain import errors, lots
from pointex.server.domain.commands import CreditPoints, DebitPoints, ReturnPoints
from pointex.server.domain.events import (
    NEVER,
    AccountEvent,
    PointsDebited,
    TransferCompensated,
    TransferCompleted,
    TransferCredited,
    TransferInitiated,
    TransferReversed,
)
from pointex.server.domain.program import FeeQuote
from pointex.server.domain.values import REVERSED_KINDS, Caller, Instant, TransferKind

TransferEvent = (
    TransferInitiated
    | TransferCredited
    | TransferCompleted
    | TransferCompensated
    | TransferReversed
)


class TransferTerms(Protocol):
    """What a transfer moves: validated by the edge, the same on every retry."""

    @property
    def request_id(self) -> str:
        """Return the client's request id."""
        ...

    @property
    def kind(self) -> TransferKind:
        """Return the kind of movement (issue, redeem, transfer)."""
        ...

    @property
    def from_account_id(self) -> str:
        """Return the source account."""
        ...

    @property
    def to_account_id(self) -> str:
        """Return the destination account."""
        ...

    @property
    def amount_points(self) -> int:
        """Return the points moved."""
        ...

    @property
    def memo(self) -> str:
        """Return the memo or reason."""
        ...

    @property
    def activates_at(self) -> Instant:
        """Return when an issue's points become spendable (NEVER: at once)."""
        ...

    @property
    def fee_quote(self) -> FeeQuote | None:
        """Return the fee quote a transfer carries, if any."""
        ...


def same_terms(terms: TransferTerms, initiated: TransferInitiated) -> bool:
    """Tell whether a recorded transfer has these terms (a retry, not a reused request id)."""
    return (
        terms.kind,
        terms.from_account_id,
        terms.to_account_id,
        terms.amount_points,
        terms.memo,
        terms.activates_at,
    ) == (
        initiated.kind,
        initiated.from_account_id,
        initiated.to_account_id,
        initiated.amount_points,
        initiated.memo,
        initiated.activates_at,
    )


class Phase(enum.Enum):
    """Where a transfer's process is."""

    DEBITED = "DEBITED"  # The points are in flight: the credit (or its compensation) is due.
    CREDITED = "CREDITED"  # The destination has the points; the fee's credit (or return) is due.
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as rebuilt from its stream."""

    initiated: TransferInitiated
    phase: Phase
    version: int
    reason: str = ""  # Why the destination (COMPENSATED) or the fee account refused.
    reversed_by: str = ""  # The latest reversal of a COMPLETED issue or redemption, if any.

    @property
    def transfer_id(self) -> str:
        """Return the transfer's id (its request key)."""
        return self.initiated.transfer_id


def evolve(transfer: Transfer | None, event: TransferEvent) -> Transfer:
    """Return the transfer after `event`."""
    if isinstance(event, TransferInitiated):
        assert transfer is None, "a transfer is initiated once"
        return Transfer(event, Phase.COMPLETED if event.completed else Phase.DEBITED, 1)
    assert transfer is not None, f"{type(event).__name__} before TransferInitiated"
    assert event.transfer_id == transfer.transfer_id, event
    if isinstance(event, TransferReversed):
        assert transfer.phase is Phase.COMPLETED, transfer
        return replace(
            transfer, version=transfer.version + 1, reversed_by=event.reversal_transfer_id
        )
    if isinstance(event, TransferCredited):
        assert transfer.phase is Phase.DEBITED, transfer
        assert transfer.initiated.fee_points, "only a transfer with a fee is credited first"
        return replace(transfer, phase=Phase.CREDITED, version=transfer.version + 1)
    if isinstance(event, TransferCompleted):
        # From CREDITED after a fee's step; from DEBITED otherwise (or in one unit, before
        # TransferInitiated could be `completed`).
        assert transfer.phase is Phase.DEBITED or transfer.phase is Phase.CREDITED, transfer
        return replace(
            transfer,
            phase=Phase.COMPLETED,
            version=transfer.version + 1,
            reason=event.fee_refused_reason,
        )
    assert transfer.phase is Phase.DEBITED, transfer
    return replace(
        transfer, phase=Phase.COMPENSATED, version=transfer.version + 1, reason=event.reason
    )


# --- What happened, and the next step -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resumed:
    """The debit committed, or the server restarted: do what is due now."""


@dataclass(frozen=True, slots=True)
class CreditRefused:
    """The account credited refused (closed since the check, over its ceiling...)."""

    reason: str


Happened = Resumed | CreditRefused


@dataclass(frozen=True, slots=True)
class Credit:
    """Credit the destination (or the fee account), committing the process's next event."""

    command: CreditPoints
    recorded: TransferCompleted | TransferCredited


@dataclass(frozen=True, slots=True)
class Compensate:
    """Return the points to the source, committing TransferCompensated with it."""

    command: ReturnPoints
    compensated: TransferCompensated


@dataclass(frozen=True, slots=True)
class ReturnFee:
    """Give the fee back to the source, completing the transfer without it."""

    command: ReturnPoints
    completed: TransferCompleted


@dataclass(frozen=True, slots=True)
class Ended:
    """Nothing is due: the transfer completed, or was compensated for `reason`."""

    phase: Phase
    reason: str


Step = Credit | Compensate | ReturnFee | Ended


def decide(transfer: Transfer, happened: Happened) -> Step:
    """Return the next step of `transfer` after `happened`."""
    initiated = transfer.initiated
    transfer_id = initiated.transfer_id
    if transfer.phase is Phase.CREDITED:
        if isinstance(happened, CreditRefused):
            give_back = ReturnPoints(
                initiated.from_account_id,
                transfer_id,
                TransferKind.FEE,
                initiated.fee_account_id,
                initiated.fee_points,
                _lots_of(initiated)[1],
            )
            return ReturnFee(give_back, TransferCompleted(transfer_id, happened.reason))
        return Credit(fee_credit_of(initiated), TransferCompleted(transfer_id))
    if transfer.phase is not Phase.DEBITED:
        return Ended(transfer.phase, transfer.reason)
    if isinstance(happened, CreditRefused):
        give_back = ReturnPoints(
            initiated.from_account_id,
            transfer_id,
            initiated.kind,
            initiated.to_account_id,
            initiated.amount_points + initiated.fee_points,
            initiated.lots,
        )
        return Compensate(give_back, TransferCompensated(transfer_id, happened.reason))
    recorded = TransferCredited(transfer_id) if initiated.fee_points else None
    credit = credit_of(initiated, transfer_id, _lots_of(initiated)[0])
    return Credit(credit, recorded or TransferCompleted(transfer_id))


def _lots_of(initiated: TransferInitiated) -> tuple[tuple[lots.Lot, ...], ...]:
    """Return the lots of a transfer's points and those of its fee, as its debit took them."""
    taken = initiated.amount_points + initiated.fee_points
    return lots.split(initiated.lots, taken, initiated.amount_points)


# --- The commands of the start --------------------------------------------------------------


def credit_of(
    transfer: TransferTerms | TransferInitiated,
    key: str,
    arriving: tuple[lots.Lot, ...] = lots.NO_LOTS,
) -> CreditPoints:
    """Return the credit a transfer asks of its destination (`arriving`: the points' lots)."""
    return CreditPoints(
        transfer.to_account_id,
        key,
        transfer.kind,
        transfer.from_account_id,
        transfer.amount_points,
        transfer.memo,
        transfer.activates_at,
        arriving,
    )


def credit_after(initiated: TransferInitiated) -> CreditPoints:
    """Return the credit of a debited transfer, its points in the lots its debit took."""
    return credit_of(initiated, initiated.transfer_id, _lots_of(initiated)[0])


def fee_credit_of(initiated: TransferInitiated) -> CreditPoints:
    """Return the credit of a transfer's fee to the fee account."""
    return CreditPoints(
        initiated.fee_account_id,
        initiated.transfer_id,
        TransferKind.FEE,
        initiated.from_account_id,
        initiated.fee_points,
        initiated.memo,
        NEVER,
    )


def debit_of(caller: Caller, terms: TransferTerms, key: str, reverses: str = "") -> DebitPoints:
    """Return the debit that starts a transfer on its source (`reverses`: a reversal's original)."""
    return DebitPoints(
        caller,
        terms.from_account_id,
        key,
        terms.kind,
        terms.to_account_id,
        terms.amount_points,
        terms.memo,
        reverses,
        terms.fee_quote,
    )


def initiated_of(
    terms: TransferTerms, key: str, debited: AccountEvent, *, completed: bool = False
) -> TransferInitiated:
    """Return the process record that commits with the source's debit.

    `completed`: the transfer commits whole with it, its credits in the same unit.
    """
    assert isinstance(debited, PointsDebited), debited
    return TransferInitiated(
        key,
        terms.kind,
        terms.from_account_id,
        terms.to_account_id,
        terms.amount_points,
        terms.memo,
        terms.request_id,
        debited.available_points,
        terms.activates_at,
        debited.fee_points,
        debited.fee_account_id,
        debited.lots,
        completed,
    )


# --- Reversals --------------------------------------------------------------------------------


def reversal(
    original: Transfer,
    kind: TransferKind,
    amount_points: int,
    reversal_id: str,
    *,
    earlier_reversal_compensated: bool = False,
) -> TransferReversed:
    """Return the record a reversal of `original` commits with its first step, or refuse it.

    A COMPLETED issue (for REVERSE_ISSUE) or redemption (REVERSE_REDEEM) is reversed at most
    once, by at most its amount; a reversal that was itself compensated (its credit refused)
    took nothing back, so the original may be reversed again.
    """
    transfer_id = original.transfer_id
    if original.initiated.kind is not REVERSED_KINDS[kind] or original.phase is not Phase.COMPLETED:
        raise errors.FailedPrecondition(
            errors.TRANSFER_NOT_REVERSIBLE,
            f"only a completed {REVERSED_KINDS[kind].value.lower()} is reversed this way",
            transfer_id=transfer_id,
        )
    if original.reversed_by and not earlier_reversal_compensated:
        raise errors.FailedPrecondition(
            errors.TRANSFER_ALREADY_REVERSED,
            "the transfer was reversed already",
            transfer_id=transfer_id,
            reversal_transfer_id=original.reversed_by,
        )
    if amount_points > original.initiated.amount_points:
        raise errors.FailedPrecondition(
            errors.REVERSAL_EXCEEDS_ORIGINAL,
            f"at most the original's {original.initiated.amount_points} points",
            transfer_id=transfer_id,
            limit=str(original.initiated.amount_points),
        )
    return TransferReversed(transfer_id, reversal_id, amount_points)
