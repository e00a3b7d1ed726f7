"""Reversals under the program's debt policy in the pure projections.

A ReverseIssue or ReverseRedeem that finds fewer points available than it takes back may,
under the program's debt policy, take the account below zero: its PointsDebited states the
negative balance and the lowest one the policy allowed (`debt_floor_points`). The account
keeps that floor while it stays in debt, and credits bring it back. Any other negative
balance, or one below the floor, is still a bug that stops the projection.

The story: merchant m1 mints 100 and gives member a1 60; a1 gives 50 to b1; a ReverseIssue
then takes the 60 back from a1, who had 10 left, under a policy of 100: a1 is at -50.
"""

from __future__ import annotations

import dataclasses

import pytest

from pointex.v1 import common_pb2, query_service_pb2
from tests.feed_events import Log
from tests.unit.test_projections import Rows


def _spent(log: Log, rows: Rows) -> None:
    """Open m1, a1, b1; m1 mints 100 and gives a1 60; a1 gives b1 50 (a1 has 10 left)."""
    rows.apply(
        [log.opened("m1", "acme", kind=2), log.opened("a1", "other"), log.opened("b1", "other")]
    )
    rows.apply([log.minted("m1", 100, after=100), *log.transfer("m1", "a1", 60, 40, 60)])
    rows.apply(log.transfer("a1", "b1", 50, 10, 50))


def _in_debt(log: Log, rows: Rows) -> None:
    """The story up to the reversal: a1 at -50, within a floor of -100; m1 back at 100."""
    _spent(log, rows)
    rows.apply(log.reversal("a1", "m1", 60, source_after=-50, target_after=100, debt_floor=-100))


def test_a_reversal_under_the_debt_policy_takes_the_account_below_zero() -> None:
    """The debit shows in the row, the history and the notice; the floor is kept; I1 holds."""
    log, rows = Log(), Rows()
    _spent(log, rows)
    changes = rows.apply(
        log.reversal("a1", "m1", 60, source_after=-50, target_after=100, debt_floor=-100)
    )
    member = rows.accounts["a1"]
    assert (member.available_points, member.debt_floor_points) == (-50, -100)
    assert rows.accounts["m1"].debt_floor_points == 0
    out = changes.movements[0]
    assert (out.kind, out.available_delta_points, out.available_points) == (
        "REVERSE_ISSUE_OUT",
        -60,
        -50,
    )
    sent = query_service_pb2.Notification.FromString(changes.notifications[0].body)
    assert (sent.points_moved.amount_points, sent.points_moved.available_points) == (60, -50)
    assert rows.conserved()


def test_credits_bring_the_account_back_and_the_floor_ends_at_zero() -> None:
    """A credit short of the debt keeps the floor; once available is ≥ 0 the floor is 0."""
    log, rows = Log(), Rows()
    _in_debt(log, rows)
    rows.apply(log.transfer("b1", "a1", 30, 20, -20))
    assert (rows.accounts["a1"].available_points, rows.accounts["a1"].debt_floor_points) == (
        -20,
        -100,
    )
    rows.apply(log.transfer("b1", "a1", 20, 0, 0))
    assert (rows.accounts["a1"].available_points, rows.accounts["a1"].debt_floor_points) == (0, 0)
    assert rows.conserved()


def test_a_reversal_redeem_takes_a_merchant_below_zero_too() -> None:
    """ReverseRedeem debits the merchant; the same policy may take it below zero."""
    log, rows = Log(), Rows()
    _spent(log, rows)
    rows.apply(log.transfer("m1", "b1", 40, 0, 90))
    rows.apply(
        log.reversal(
            "m1",
            "b1",
            25,
            source_after=-25,
            target_after=115,
            debt_floor=-30,
            kind=common_pb2.TRANSFER_KIND_REVERSE_REDEEM,
        )
    )
    merchant = rows.accounts["m1"]
    assert (merchant.available_points, merchant.debt_floor_points) == (-25, -30)
    assert rows.conserved()


def test_a_later_reversal_in_debt_sets_the_floor_it_was_decided_under() -> None:
    """In debt, a reversal under a smaller policy replaces the floor with its own."""
    log, rows = Log(), Rows()
    _in_debt(log, rows)
    rows.apply(log.transfer("b1", "a1", 40, 10, -10))
    rows.apply(log.reversal("a1", "m1", 15, source_after=-25, target_after=115, debt_floor=-30))
    assert (rows.accounts["a1"].available_points, rows.accounts["a1"].debt_floor_points) == (
        -25,
        -30,
    )
    assert rows.conserved()


def test_taking_pending_points_back_in_debt_keeps_the_floor() -> None:
    """A reversal from pending points leaves available (negative) and its floor as they are."""
    log, rows = Log(), Rows()
    _in_debt(log, rows)
    issued = log.pending_issue("m1", "a1", 20, merchant_after=80, pending_after=20)
    rows.apply(issued)
    issue = issued[0].transfer_initiated.transfer_id
    rows.apply(log.reverse_pending("a1", "m1", issue, 5, member_available=-50, merchant_after=85))
    member = rows.accounts["a1"]
    assert (member.available_points, member.pending_points, member.debt_floor_points) == (
        -50,
        15,
        -100,
    )
    assert rows.conserved()


def test_a_reversal_into_debt_without_a_floor_stops_the_projection() -> None:
    """A reversal that states a negative balance and no debt floor is a bug."""
    log, rows = Log(), Rows()
    _spent(log, rows)
    with pytest.raises(AssertionError):
        rows.apply(log.reversal("a1", "m1", 60, source_after=-50, target_after=100))


def test_a_transfer_into_debt_stops_the_projection() -> None:
    """A negative balance from anything but a reversal under the policy is a bug, as before."""
    log, rows = Log(), Rows()
    _spent(log, rows)
    with pytest.raises(AssertionError):
        rows.apply(log.transfer("a1", "b1", 60, -50, 110))


def test_a_balance_below_its_debt_floor_stops_the_projection() -> None:
    """A reversal whose balance is below the floor it states is a bug."""
    log, rows = Log(), Rows()
    _spent(log, rows)
    with pytest.raises(AssertionError):
        rows.apply(log.reversal("a1", "m1", 60, source_after=-50, target_after=100, debt_floor=-30))


def test_any_other_debit_in_debt_stops_the_projection() -> None:
    """In debt, only a reversal under the policy goes lower: a transfer out is a bug."""
    log, rows = Log(), Rows()
    _in_debt(log, rows)
    with pytest.raises(AssertionError):
        rows.apply(log.transfer("a1", "b1", 10, -60, 60))


def test_back_at_zero_a_new_debt_needs_a_floor_of_its_own() -> None:
    """Once the balance is ≥ 0 the old floor is gone: a new negative balance needs one."""
    log, rows = Log(), Rows()
    _in_debt(log, rows)
    rows.apply(log.transfer("b1", "a1", 50, 0, 0))
    with pytest.raises(AssertionError):
        rows.apply(log.reversal("a1", "m1", 5, source_after=-5, target_after=105))


@pytest.mark.parametrize(
    "change",
    [
        {"kind": common_pb2.TRANSFER_KIND_TRANSFER},
        {"kind": common_pb2.TRANSFER_KIND_REDEEM},
        {"debt_floor_points": 7},
        {"available_points": 0, "amount_points": 10},
    ],
    ids=["transfer", "redeem", "positive-floor", "not-below-zero"],
)
def test_a_debt_floor_on_anything_but_a_reversal_into_debt_stops_the_projection(
    change: dict[str, int],
) -> None:
    """The floor belongs to a reversal that went below zero; on any other debit it is a bug."""
    log, rows = Log(), Rows()
    _spent(log, rows)
    events = log.reversal("a1", "m1", 60, source_after=-50, target_after=100, debt_floor=-100)
    for name, value in change.items():
        setattr(events[1].points_debited, name, value)
    with pytest.raises(AssertionError):
        rows.apply(events)


def test_closing_an_account_in_debt_stops_the_projection() -> None:
    """An account is closed only with nothing in it, and a debt is not nothing."""
    log, rows = Log(), Rows()
    _in_debt(log, rows)
    with pytest.raises(AssertionError):
        rows.apply([log.closed("a1")])


def test_the_rows_do_not_depend_on_where_batches_end() -> None:
    """The story projected event by event gives the rows of the whole story at once."""
    log = Log()
    whole = Rows()
    _in_debt(log, whole)
    events = [
        *log.transfer("b1", "a1", 30, 20, -20),
        *log.reversal("a1", "m1", 5, source_after=-25, target_after=105, debt_floor=-40),
        *log.transfer("b1", "a1", 20, 0, -5),
    ]
    single = Rows()
    single.accounts = dict(whole.accounts)
    single.position = whole.position
    whole.apply(events)
    for event in events:
        single.apply([event])
    assert {k: dataclasses.asdict(v) for k, v in single.accounts.items()} == {
        k: dataclasses.asdict(v) for k, v in whole.accounts.items()
    }
    assert (whole.accounts["a1"].available_points, whole.accounts["a1"].debt_floor_points) == (
        -5,
        -40,
    )
