"""The transfer fee, pure: its formula, its schedule's version, quotes, and the debit it adds to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointex.server import limits
from pointex.server.domain import errors, program
from pointex.server.domain.account import decide
from pointex.server.domain.commands import DebitPoints
from pointex.server.domain.events import PointsDebited
from pointex.server.domain.program import (
    NO_PROGRAM,
    FeeQuote,
    LimitIndex,
    Program,
    ProgramRules,
    ProgramRulesSet,
    SetProgramRules,
    TransferFee,
)
from pointex.server.domain.values import OPERATOR, TransferKind
from tests.unit.test_program import ACME, apply, limit, member

FEES = TransferFee(flat_points=2, per_mille=15, fee_account_id="fees")


def _program(fee: TransferFee = FEES, *, changes: int = 1) -> Program:
    """The program after `changes` rules changes, the last one setting `fee`."""
    state = NO_PROGRAM
    for _ in range(changes - 1):
        state = program.evolve(state, ProgramRulesSet(ProgramRules()))
    return program.evolve(state, ProgramRulesSet(ProgramRules(transfer_fee=fee)))


def _debit(
    amount: int, quote: FeeQuote | None = None, kind: TransferKind = TransferKind.TRANSFER
) -> DebitPoints:
    return DebitPoints(ACME, "u1", "t1", kind, "u2", amount, "", fee_quote=quote)


def test_the_fee_is_flat_plus_per_mille_rounded_up() -> None:
    """2 + ceil(1000 * 15 / 1000) = 17; 2 + ceil(1 * 15 / 1000) = 3; the fee account pays none."""
    assert FEES.fee_of("u1", 1_000) == 17
    assert FEES.fee_of("u1", 1) == 3
    assert FEES.fee_of("u1", 1_001) == 2 + 16
    assert FEES.fee_of("fees", 1_000) == 0
    assert TransferFee().fee_of("u1", 10**12) == 0


@given(st.integers(1, limits.points_amount_max), st.integers(0, 1_000), st.integers(0, 10**6))
def test_the_fee_is_the_least_integer_at_or_above_the_rate(
    amount: int, rate: int, flat: int
) -> None:
    """Fee - flat is the smallest integer n with 1000·n ≥ amount·rate: never a float."""
    fee = TransferFee(flat, rate, "fees").fee_of("u1", amount) - flat
    assert fee * 1000 >= amount * rate
    assert (fee - 1) * 1000 < amount * rate or fee == 0


def test_the_schedule_version_moves_only_when_the_fee_changes() -> None:
    """Other rule changes keep the fee's version, so quotes stay good across them."""
    state = _program()
    assert (state.version, state.fees_version) == (1, 1)
    other = ProgramRules((limit(high=10),), transfer_fee=FEES)
    state = program.evolve(state, ProgramRulesSet(other))
    assert (state.version, state.fees_version) == (2, 1)
    state = program.evolve(state, ProgramRulesSet(ProgramRules()))
    assert (state.version, state.fees_version) == (3, 3)


def test_a_transfer_pays_its_fee_on_top_and_nothing_else_does() -> None:
    """The debit states the fee and its account; available falls by both; a redeem pays none."""
    rules = LimitIndex(_program())
    account = member(1_000)
    (debited,) = decide(account, _debit(100), rules)
    assert isinstance(debited, PointsDebited)
    assert (debited.fee_points, debited.fee_account_id) == (2 + 2, "fees")
    assert debited.available_points == 1_000 - 104
    assert apply(account, _debit(100), rules).available_points == 896
    (redeemed,) = decide(account, _debit(100, kind=TransferKind.REDEEM), rules)
    assert isinstance(redeemed, PointsDebited)
    assert (redeemed.fee_points, redeemed.fee_account_id) == (0, "")


def test_the_fee_counts_in_what_must_be_available() -> None:
    """1,000 points cannot give 990 when the fee takes 17 more."""
    with pytest.raises(errors.FailedPrecondition) as caught:
        decide(member(1_000), _debit(990), LimitIndex(_program()))
    assert caught.value.reason == errors.INSUFFICIENT_POINTS


def test_a_quote_binds_the_fee_and_a_changed_schedule_refuses_it() -> None:
    """The quote of the schedule in force passes; one of an older schedule names the new one."""
    state = _program()
    quote = program.quote(state, "u1", 100)
    assert quote == FeeQuote(4, 1)
    (debited,) = decide(member(1_000), _debit(100, quote), LimitIndex(state))
    assert isinstance(debited, PointsDebited)
    assert debited.fee_points == 4
    changed = program.evolve(
        state, ProgramRulesSet(ProgramRules(transfer_fee=TransferFee(5, 0, "fees")))
    )
    with pytest.raises(errors.FailedPrecondition) as caught:
        decide(member(1_000), _debit(100, quote), LimitIndex(changed))
    assert caught.value.reason == errors.FEE_SCHEDULE_CHANGED
    assert caught.value.metadata == {"schedule_version": "2", "fee_points": "5"}


def test_a_quote_of_another_transfer_is_invalid() -> None:
    """A quote for another amount is not this transfer's, whatever its version."""
    state = _program()
    with pytest.raises(errors.InvalidArgument) as caught:
        decide(member(1_000), _debit(100, FeeQuote(3, 1)), LimitIndex(state))
    assert caught.value.metadata["field"] == "fee_quote.fee_points"


def test_a_limit_counts_the_points_given_not_the_fee() -> None:
    """At most 100 per transfer: 100 with its fee of 4 passes."""
    rules = ProgramRules((limit(high=100),), transfer_fee=FEES)
    state = program.evolve(NO_PROGRAM, ProgramRulesSet(rules))
    (debited,) = decide(member(1_000), _debit(100), LimitIndex(state))
    assert isinstance(debited, PointsDebited)
    assert debited.amount_points + debited.fee_points == 104


@pytest.mark.parametrize(
    ("fee", "field"),
    [
        (TransferFee(-1, 0, "fees"), "rules.transfer_fee.flat_points"),
        (TransferFee(limits.points_amount_max + 1, 0, "fees"), "rules.transfer_fee.flat_points"),
        (TransferFee(0, 1_001, "fees"), "rules.transfer_fee.per_mille"),
        (TransferFee(0, -1, "fees"), "rules.transfer_fee.per_mille"),
        (TransferFee(1, 0, ""), "rules.transfer_fee.fee_account_id"),
    ],
    ids=["negative", "above-the-maximum", "over-a-thousand", "negative-rate", "no-account"],
)
def test_a_fee_schedule_out_of_bounds_names_its_field(fee: TransferFee, field: str) -> None:
    """Each malformed schedule is INVALID_ARGUMENT naming its field."""
    with pytest.raises(errors.InvalidArgument) as caught:
        program.decide(NO_PROGRAM, SetProgramRules(OPERATOR, 0, ProgramRules(transfer_fee=fee)))
    assert caught.value.metadata["field"] == field
