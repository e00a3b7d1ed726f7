"""Pending earn on the account, and the debt policy of the reversals that take points back.

An issue with a later activation time credits pending points: counted in the balance and
the ceiling, not spendable. Activation is decided at or after its time and only once; a
reversal takes pending points back first, never below zero. The property test drives random
issues, activations, reversals and spending through time and checks conservation and that
nothing is spent before its time.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server import limits
from pointex.server.actors import snapshots
from pointex.server.domain import errors, program
from pointex.server.domain.account import Account, PendingIssue, decide, evolve
from pointex.server.domain.commands import (
    AccountCommand,
    ActivatePoints,
    CloseAccount,
    CreditPoints,
    DebitPoints,
    OpenAccount,
)
from pointex.server.domain.events import (
    AccountEvent,
    PointsActivated,
    PointsCredited,
    PointsDebited,
    PointsPending,
)
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    Caller,
    Instant,
    Role,
    Span,
    TransferKind,
)

ACME = Caller(Role.PARTNER, "acme")
NOW = 1_767_225_600_000
LATER = Instant(NOW + 3_600_000)


def run(state: Account | None, command: AccountCommand, now_ms: int = NOW) -> Account:
    """Decide `command` at `now_ms` and evolve through its events."""
    for event in decide(state, command, now_ms=now_ms):
        state = evolve(state, event)
    assert state is not None
    return state


def member() -> Account:
    """An open member of acme with 100 available points."""
    state = run(None, OpenAccount(ACME, "u1", AccountKind.MEMBER, "acme", ""))
    return run(state, CreditPoints("u1", "opening", TransferKind.ISSUE, "m1", 100, ""))


def issue(transfer_id: str, amount: int, at: Instant = LATER) -> CreditPoints:
    """The member's side of an issue whose points activate at `at`."""
    return CreditPoints("u1", transfer_id, TransferKind.ISSUE, "m1", amount, "", at)


def reverse(transfer_id: str, amount: int) -> DebitPoints:
    """The member's side of a reversal of the issue `transfer_id`."""
    return DebitPoints(
        OPERATOR,
        "u1",
        f"rev-{transfer_id}",
        TransferKind.REVERSE_ISSUE,
        "m1",
        amount,
        "",
        transfer_id,
    )


def test_a_later_issue_is_pending_counted_and_not_spendable() -> None:
    """PointsPending: pending 50, available still 100; spending 101 is refused."""
    events = decide(member(), issue("t1", 50), now_ms=NOW)
    assert events == [PointsPending("u1", "t1", "m1", 50, "", LATER, 50)]
    account = evolve(member(), events[0])
    assert (account.available_points, account.pending_points, account.total_points) == (
        100,
        50,
        150,
    )
    spend = DebitPoints(ACME, "u1", "x", TransferKind.TRANSFER, "u2", 101, "")
    with pytest.raises(errors.FailedPrecondition) as short:
        decide(account, spend, now_ms=NOW)
    assert short.value.reason == errors.INSUFFICIENT_POINTS


def test_an_issue_whose_time_has_come_is_available_at_once() -> None:
    """An activation time not after the decision: PointsCredited, as without one."""
    (event,) = decide(member(), issue("t1", 50, Instant(NOW)), now_ms=NOW)
    assert isinstance(event, PointsCredited)
    assert event.available_points == 150


def test_activation_happens_at_its_time_and_once() -> None:
    """Early: nothing. On time: PointsActivated. Again: nothing."""
    account = run(member(), issue("t1", 50))
    assert decide(account, ActivatePoints("u1", "t1"), now_ms=NOW) == []
    (event,) = decide(account, ActivatePoints("u1", "t1"), now_ms=LATER.unix_ms)
    assert event == PointsActivated("u1", "t1", 50, 150, 0)
    activated = evolve(account, event)
    assert (activated.available_points, activated.pending) == (150, ())
    assert decide(activated, ActivatePoints("u1", "t1"), now_ms=LATER.unix_ms) == []


def test_a_reversal_takes_pending_points_back_first_and_the_rest_activates() -> None:
    """Reverse 20 of a pending 50: available unchanged; 30 activate later."""
    account = run(member(), issue("t1", 50))
    (taken,) = decide(account, reverse("t1", 20), now_ms=NOW)
    assert isinstance(taken, PointsDebited)
    assert (taken.pending_transfer_id, taken.available_points) == ("t1", 100)
    account = evolve(account, taken)
    assert account.pending == (PendingIssue("t1", 30, LATER),)
    account = run(account, ActivatePoints("u1", "t1"), LATER.unix_ms)
    assert (account.available_points, account.pending_points) == (130, 0)


def test_a_reversal_in_full_leaves_nothing_to_activate_and_never_goes_negative() -> None:
    """Reverse all 50 pending: nothing activates; available was never touched."""
    account = run(run(member(), issue("t1", 50)), reverse("t1", 50))
    assert (account.available_points, account.pending) == (100, ())
    assert decide(account, ActivatePoints("u1", "t1"), now_ms=LATER.unix_ms) == []


def test_pending_points_count_against_closing_and_the_ceiling_and_their_number() -> None:
    """No close while pending; the ceiling counts them; at most pending_issues_max issues."""
    account = run(member(), issue("t1", 50))
    with pytest.raises(errors.FailedPrecondition) as closing:
        decide(account, CloseAccount(ACME, "u1", ""), now_ms=NOW)
    assert closing.value.metadata["pending_points"] == "50"
    room = limits.points_balance_max - account.total_points
    with pytest.raises(errors.FailedPrecondition) as ceiling:
        decide(account, issue("t2", room + 1), now_ms=NOW)
    assert ceiling.value.reason == errors.BALANCE_CEILING_EXCEEDED
    full = account
    for i in range(limits.pending_issues_max - 1):
        full = evolve(full, PointsPending("u1", f"p{i}", "m1", 1, "", LATER, 51 + i))
    with pytest.raises(errors.FailedPrecondition) as crowded:
        decide(full, issue("one-more", 1), now_ms=NOW)
    assert crowded.value.reason == errors.TOO_MANY_PENDING_ISSUES


def test_a_snapshot_keeps_the_pending_issues() -> None:
    """Restored from its snapshot, the account activates what it would have."""
    account = run(run(member(), issue("t1", 50)), issue("t2", 5, Instant(LATER.unix_ms + 1)))
    restored = snapshots.from_snapshot(snapshots.to_snapshot("account-u1", account, 4, 9))
    assert restored == (account, 4, 9)


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["issue", "activate", "reverse", "spend"]),
        st.integers(0, 5),  # Which issue.
        st.integers(1, 80),
        st.integers(0, 2 * 3_600_000),  # Time passing before the step.
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_STEPS)
def test_nothing_is_spent_before_its_time_and_nothing_is_lost(
    steps: list[tuple[str, int, int, int]],
) -> None:
    """Random issues (pending an hour), activations, reversals and spending over time."""
    now = NOW
    account = member()
    brought_in = 100  # Points the account received, less what went back or was spent.
    issued: dict[str, int] = {}
    for action, which, amount, elapsed in steps:
        now += elapsed
        transfer_id = f"t{which}"
        command: AccountCommand
        if action == "issue":
            if transfer_id in issued:
                continue
            command = issue(transfer_id, amount, Instant(now + 3_600_000))
        elif action == "activate":
            command = ActivatePoints("u1", transfer_id)
        elif action == "reverse":
            command = reverse(transfer_id, min(amount, issued.get(transfer_id, amount)))
        else:
            command = DebitPoints(ACME, "u1", f"s{now}", TransferKind.TRANSFER, "u2", amount, "")
        outcome = _decided(account, command, now)
        if isinstance(outcome, errors.DomainError):
            assert outcome.reason in {errors.INSUFFICIENT_POINTS, errors.POINTS_ALREADY_SPENT}
            continue
        for event in outcome:
            if isinstance(event, PointsActivated):
                assert now >= next(
                    p.activates_at.unix_ms
                    for p in account.pending
                    if p.transfer_id == event.transfer_id
                ), "activated early"
            account = evolve(account, event)
            brought_in += _signed(event)
            if isinstance(event, PointsPending | PointsCredited):
                issued[event.transfer_id] = event.amount_points
        assert account.total_points == brought_in
        assert account.available_points >= 0
        assert all(p.amount_points > 0 for p in account.pending)


def _signed(event: AccountEvent) -> int:
    """What `event` brought into the account (negative: what left it)."""
    if isinstance(event, PointsPending | PointsCredited):
        return event.amount_points
    if isinstance(event, PointsDebited):
        return -event.amount_points
    return 0  # An activation moves points within the account.


def _decided(
    state: Account, command: AccountCommand, now_ms: int
) -> list[AccountEvent] | errors.DomainError:
    try:
        return decide(state, command, now_ms=now_ms)
    except errors.DomainError as error:
        return error


# --- The debt policy of reversals ---------------------------------------------------------------


def debt_policy(points: int) -> program.LimitIndex:
    """The rules in force with a reversal debt policy of `points` (and no limits)."""
    return program.LimitIndex(program.Program(1, program.ProgramRules((), points)))


def test_a_reversal_of_spent_points_goes_below_zero_only_within_the_policy() -> None:
    """100 available, take back 130: refused without a policy, -30 with one of 50; not -60."""
    take_back = DebitPoints(
        OPERATOR, "u1", "rev", TransferKind.REVERSE_ISSUE, "m1", 130, "", "gone"
    )
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(member(), take_back, now_ms=NOW)
    assert (refused.value.reason, refused.value.metadata["limit"]) == (
        errors.POINTS_ALREADY_SPENT,
        "0",
    )
    (event,) = decide(member(), take_back, debt_policy(50), NOW)
    assert isinstance(event, PointsDebited)
    assert (event.available_points, event.debt_floor_points) == (-30, -50)
    in_debt = evolve(member(), event)
    assert in_debt.available_points == -30
    with pytest.raises(errors.FailedPrecondition) as too_deep:
        decide(member(), dataclasses.replace(take_back, amount_points=151), debt_policy(50), NOW)
    assert too_deep.value.metadata["limit"] == "50"
    spend = DebitPoints(ACME, "u1", "x", TransferKind.TRANSFER, "u2", 1, "")
    with pytest.raises(errors.FailedPrecondition):
        decide(in_debt, spend, debt_policy(50), NOW)  # Nothing to spend while in debt.
    with pytest.raises(errors.FailedPrecondition):
        decide(in_debt, CloseAccount(ACME, "u1", ""), now_ms=NOW)
    repaid = run(in_debt, CreditPoints("u1", "t9", TransferKind.ISSUE, "m1", 40, ""))
    assert repaid.available_points == 10


# --- The program's pending period ---------------------------------------------------------------


def _period(ms: int) -> program.LimitIndex:
    rules = program.ProgramRules(pending_period=Span(ms))
    return program.LimitIndex(program.Program(1, rules))


def test_an_issue_without_its_own_time_is_pending_for_the_programs_period() -> None:
    """Under a pending period an issue with no activates_at is pending until now + period."""
    plain = CreditPoints("u1", "t1", TransferKind.ISSUE, "m1", 50, "")
    (pending,) = decide(member(), plain, _period(86_400_000), NOW)
    assert isinstance(pending, PointsPending)
    assert pending.activates_at == Instant(NOW + 86_400_000)
    (own,) = decide(member(), issue("t2", 50), _period(86_400_000), NOW)
    assert isinstance(own, PointsPending)
    assert own.activates_at == LATER  # The issue's own time stands.
    given = CreditPoints("u1", "t3", TransferKind.TRANSFER, "u2", 50, "")
    (credited,) = decide(member(), given, _period(86_400_000), NOW)
    assert isinstance(credited, PointsCredited)  # Only issues wait.
    (at_once,) = decide(member(), plain, _period(0), NOW)
    assert isinstance(at_once, PointsCredited)


def test_a_pending_period_out_of_its_bounds_is_refused_naming_it() -> None:
    """Whole seconds, up to the longest activation delay."""
    too_long = (limits.pending_activation_days_max + 1) * 86_400_000
    for ms in (1_500, too_long):
        with pytest.raises(errors.InvalidArgument) as refused:
            program.validate(program.ProgramRules(pending_period=Span(ms)))
        assert refused.value.metadata["field"] == "rules.pending_period"
