"""The transfer process, pure: every phase against every input, and the start's commands."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pointex.server.domain import errors
from pointex.server.domain.commands import CreditPoints, ReturnPoints
from pointex.server.domain.events import (
    NEVER,
    PointsDebited,
    TransferCompensated,
    TransferCompleted,
    TransferCredited,
    TransferInitiated,
    TransferReversed,
)
from pointex.server.domain.processes import transfer as process
from pointex.server.domain.program import FeeQuote
from pointex.server.domain.values import Caller, Instant, Role, TransferKind

KEY = "k" * 32
PARTNER = Caller(Role.PARTNER, "acme")


@dataclass(frozen=True)
class Terms:
    """A transfer's terms, as the edge hands them over."""

    request_id: str = "r1"
    kind: TransferKind = TransferKind.TRANSFER
    from_account_id: str = "acme:alice"
    to_account_id: str = "acme:bob"
    amount_points: int = 40
    memo: str = "gift"
    activates_at: Instant = NEVER
    fee_quote: FeeQuote | None = None


FEE = 3


def _initiated(terms: Terms = Terms(), fee: int = 0) -> TransferInitiated:
    debited = PointsDebited(
        terms.from_account_id,
        KEY,
        terms.kind,
        terms.to_account_id,
        terms.amount_points,
        terms.memo,
        60,
        fee_points=fee,
        fee_account_id="fees" if fee else "",
    )
    return process.initiated_of(terms, KEY, debited)


def _phases() -> dict[str, process.Transfer]:
    debited = process.evolve(None, _initiated())
    with_fee = process.evolve(None, _initiated(fee=FEE))
    credited = process.evolve(with_fee, TransferCredited(KEY))
    return {
        "debited": debited,
        "completed": process.evolve(debited, TransferCompleted(KEY)),
        "compensated": process.evolve(debited, TransferCompensated(KEY, "ACCOUNT_CLOSED")),
        "debited with a fee": with_fee,
        "credited": credited,
        "completed with its fee": process.evolve(credited, TransferCompleted(KEY)),
        "completed, fee returned": process.evolve(
            credited, TransferCompleted(KEY, "ACCOUNT_CLOSED")
        ),
        "compensated with a fee": process.evolve(
            with_fee, TransferCompensated(KEY, "ACCOUNT_CLOSED")
        ),
    }


INPUTS: dict[str, process.Happened] = {
    "resumed": process.Resumed(),
    "refused": process.CreditRefused("ACCOUNT_CLOSED"),
}

EXPECTED = {
    ("debited", "resumed"): "Credit",
    ("debited", "refused"): "Compensate",
    ("completed", "resumed"): "Ended COMPLETED",
    ("completed", "refused"): "Ended COMPLETED",
    ("compensated", "resumed"): "Ended COMPENSATED ACCOUNT_CLOSED",
    ("compensated", "refused"): "Ended COMPENSATED ACCOUNT_CLOSED",
    ("debited with a fee", "resumed"): "Credit",
    ("debited with a fee", "refused"): "Compensate",
    ("credited", "resumed"): "Credit",
    ("credited", "refused"): "ReturnFee",
    ("completed with its fee", "resumed"): "Ended COMPLETED",
    ("completed with its fee", "refused"): "Ended COMPLETED",
    ("completed, fee returned", "resumed"): "Ended COMPLETED ACCOUNT_CLOSED",
    ("completed, fee returned", "refused"): "Ended COMPLETED ACCOUNT_CLOSED",
    ("compensated with a fee", "resumed"): "Ended COMPENSATED ACCOUNT_CLOSED",
    ("compensated with a fee", "refused"): "Ended COMPENSATED ACCOUNT_CLOSED",
}


def _name(step: process.Step) -> str:
    if isinstance(step, process.Ended):
        return " ".join(filter(None, ["Ended", step.phase.value, step.reason]))
    return type(step).__name__


def test_the_table_covers_every_phase_and_every_input() -> None:
    """A new phase or input without a row fails here."""
    assert set(EXPECTED) == {(p, i) for p in _phases() for i in INPUTS}


@pytest.mark.parametrize(("phase", "happened"), sorted(EXPECTED))
def test_every_phase_and_input_decide_the_expected_step(phase: str, happened: str) -> None:
    """Each pair decides one step; an ended transfer only reports its outcome."""
    assert _name(process.decide(_phases()[phase], INPUTS[happened])) == EXPECTED[phase, happened]


def test_the_credit_goes_to_the_destination_with_the_completion_at_version_one() -> None:
    """A debited transfer credits its destination the amount debited, and then completes."""
    debited = _phases()["debited"]
    step = process.decide(debited, process.Resumed())
    assert isinstance(step, process.Credit)
    assert step.command == CreditPoints(
        "acme:bob", KEY, TransferKind.TRANSFER, "acme:alice", 40, "gift"
    )
    assert step.recorded == TransferCompleted(KEY)
    assert debited.version == 1
    assert process.evolve(debited, step.recorded).phase is process.Phase.COMPLETED


def test_a_refused_credit_returns_the_points_to_the_source_with_the_reason() -> None:
    """The compensation gives back exactly the debited amount and records why."""
    step = process.decide(_phases()["debited"], process.CreditRefused("BALANCE_CEILING_EXCEEDED"))
    assert isinstance(step, process.Compensate)
    assert step.command == ReturnPoints("acme:alice", KEY, TransferKind.TRANSFER, "acme:bob", 40)
    assert step.compensated == TransferCompensated(KEY, "BALANCE_CEILING_EXCEEDED")


def test_a_fee_is_due_after_the_destination_and_goes_to_the_fee_account() -> None:
    """With a fee, the destination's credit records TransferCredited; the fee's credit ends it."""
    with_fee = _phases()["debited with a fee"]
    first = process.decide(with_fee, process.Resumed())
    assert isinstance(first, process.Credit)
    assert first.command.account_id == "acme:bob"
    assert first.command.amount_points == 40  # The fee is not the destination's.
    assert first.recorded == TransferCredited(KEY)
    credited = process.evolve(with_fee, first.recorded)
    assert (credited.phase, credited.version) == (process.Phase.CREDITED, 2)
    second = process.decide(credited, process.Resumed())
    assert isinstance(second, process.Credit)
    assert second.command == CreditPoints(
        "fees", KEY, TransferKind.FEE, "acme:alice", FEE, "gift", NEVER
    )
    assert second.recorded == TransferCompleted(KEY)


def test_a_refused_fee_goes_back_alone_and_a_refused_transfer_returns_it_too() -> None:
    """The fee account's refusal returns the fee only; the destination's returns everything."""
    fee_back = process.decide(_phases()["credited"], process.CreditRefused("ACCOUNT_CLOSED"))
    assert isinstance(fee_back, process.ReturnFee)
    assert fee_back.command == ReturnPoints("acme:alice", KEY, TransferKind.FEE, "fees", FEE)
    assert fee_back.completed == TransferCompleted(KEY, "ACCOUNT_CLOSED")
    everything = process.decide(
        _phases()["debited with a fee"], process.CreditRefused("ACCOUNT_FROZEN")
    )
    assert isinstance(everything, process.Compensate)
    assert everything.command.amount_points == 40 + FEE


def test_a_transfer_without_a_fee_is_never_credited_first() -> None:
    """TransferCredited belongs to a transfer with a fee only."""
    with pytest.raises(AssertionError):
        process.evolve(_phases()["debited"], TransferCredited(KEY))


@pytest.mark.parametrize("phase", ["completed", "compensated"])
def test_an_ended_transfer_takes_no_second_end(phase: str) -> None:
    """A completion or compensation after the end is a programmer error (evolve asserts)."""
    with pytest.raises(AssertionError):
        process.evolve(_phases()[phase], TransferCompleted(KEY))


def test_a_transfer_is_initiated_once_and_ends_only_after_it() -> None:
    """No second TransferInitiated, and no end without a start."""
    with pytest.raises(AssertionError):
        process.evolve(_phases()["debited"], _initiated())
    with pytest.raises(AssertionError):
        process.evolve(None, TransferCompleted(KEY))


def test_a_retry_has_the_same_terms_and_a_reused_id_does_not() -> None:
    """The recorded terms tell a retry from a request id reused for another transfer."""
    initiated = _initiated()
    assert process.same_terms(Terms(), initiated)
    assert not process.same_terms(Terms(amount_points=41), initiated)
    assert not process.same_terms(Terms(to_account_id="acme:carol"), initiated)


def test_the_debit_and_its_record_carry_the_terms_and_the_balance_after() -> None:
    """The start's debit names the caller and the terms; its record the balance after it."""
    debit = process.debit_of(PARTNER, Terms(), KEY)
    assert (debit.caller, debit.account_id, debit.transfer_id) == (PARTNER, "acme:alice", KEY)
    assert (debit.counterparty_account_id, debit.amount_points, debit.memo) == (
        "acme:bob",
        40,
        "gift",
    )
    initiated = _initiated()
    assert (initiated.transfer_id, initiated.request_id, initiated.from_available_points) == (
        KEY,
        "r1",
        60,
    )


# --- Reversals --------------------------------------------------------------------------------

ISSUE = Terms(kind=TransferKind.ISSUE, from_account_id="acme:shop", to_account_id="acme:alice")


def _completed(terms: Terms) -> process.Transfer:
    debited = process.evolve(None, _initiated(terms))
    return process.evolve(debited, TransferCompleted(KEY))


@pytest.mark.parametrize("amount", [1, 40])
def test_a_completed_issue_is_reversed_once_in_full_or_in_part(amount: int) -> None:
    """The record names the reversal; the original then says who reversed it."""
    original = _completed(ISSUE)
    reversed_ = process.reversal(original, TransferKind.REVERSE_ISSUE, amount, "rev-1")
    assert reversed_ == TransferReversed(KEY, "rev-1", amount)
    after = process.evolve(original, reversed_)
    assert (after.reversed_by, after.version, after.phase) == ("rev-1", 3, process.Phase.COMPLETED)
    with pytest.raises(errors.FailedPrecondition) as again:
        process.reversal(after, TransferKind.REVERSE_ISSUE, 1, "rev-2")
    assert again.value.reason == errors.TRANSFER_ALREADY_REVERSED
    assert again.value.metadata["reversal_transfer_id"] == "rev-1"
    retried = process.reversal(
        after, TransferKind.REVERSE_ISSUE, 1, "rev-3", earlier_reversal_compensated=True
    )
    assert retried.reversal_transfer_id == "rev-3"  # rev-1 took nothing back.


@pytest.mark.parametrize(
    ("original", "kind", "amount", "reason"),
    [
        (_completed(ISSUE), TransferKind.REVERSE_REDEEM, 1, errors.TRANSFER_NOT_REVERSIBLE),
        (_completed(Terms()), TransferKind.REVERSE_ISSUE, 1, errors.TRANSFER_NOT_REVERSIBLE),
        (process.evolve(None, _initiated(ISSUE)), TransferKind.REVERSE_ISSUE, 1,
         errors.TRANSFER_NOT_REVERSIBLE),
        (_completed(ISSUE), TransferKind.REVERSE_ISSUE, 41, errors.REVERSAL_EXCEEDS_ORIGINAL),
    ],
    ids=["redeem-of-an-issue", "issue-of-a-transfer", "still-in-flight", "above-the-original"],
)  # fmt: skip
def test_what_cannot_be_reversed_is_refused_with_its_reason(
    original: process.Transfer, kind: TransferKind, amount: int, reason: str
) -> None:
    """Wrong kind, not completed, or more than the original: each its own reason."""
    with pytest.raises(errors.FailedPrecondition) as refused:
        process.reversal(original, kind, amount, "rev-1")
    assert refused.value.reason == reason
    assert refused.value.metadata["transfer_id"] == KEY
