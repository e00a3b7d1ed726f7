"""Pending points (issues that activate later) in the pure projections.

An issue with an activation time arrives on the member account as pending points
(PointsPending, which completes the transfer), becomes available at its activation
(PointsActivated), and a ReverseIssue may take pending points back first (a PointsDebited
naming the issue). Each event states the balances after it and the projection checks them
(paired assertions); Hypothesis checks that I1, with pending points, holds after every batch
however the log is cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server.query.projections import keys_of
from pointex.server.query.readstore.port import PendingIssueRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.feed_events import Log
from tests.unit.test_projections import Rows

MEMO = "purchase #8812"


def _issued(log: Log, rows: Rows, amount: int = 30) -> str:
    """Open merchant m1 (100 minted) and member a1; issue `amount` pending; return the issue."""
    rows.apply([log.opened("m1", "acme", kind=2), log.opened("a1", "other")])
    rows.apply([log.minted("m1", 100, after=100)])
    events = log.pending_issue(
        "m1", "a1", amount, merchant_after=100 - amount, pending_after=amount, memo=MEMO
    )
    rows.apply(events)
    return events[0].transfer_initiated.transfer_id


def _details(body: bytes) -> query_service_pb2.PointsMovedDetails:
    return query_service_pb2.Notification.FromString(body).points_moved


def test_a_pending_issue_arrives_as_pending_points_and_completes_the_transfer() -> None:
    """PointsPending: pending +, available unchanged, in flight ended, the merchant told only."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("m1", "acme", kind=2), log.opened("a1", "other")])
    rows.apply([log.minted("m1", 100, after=100)])
    events = log.pending_issue("m1", "a1", 30, merchant_after=70, pending_after=30, memo=MEMO)
    changes = rows.apply(events)
    accounts = {a.account_id: a for a in changes.accounts}
    assert (accounts["m1"].available_points, accounts["m1"].pending_points) == (70, 0)
    assert (accounts["a1"].available_points, accounts["a1"].pending_points) == (0, 30)
    assert [m.kind for m in changes.movements] == ["ISSUE_OUT", "ISSUE_PENDING"]
    member = changes.movements[1]
    assert (member.available_delta_points, member.available_points) == (0, 0)
    assert (member.pending_delta_points, member.pending_points) == (30, 30)
    assert (member.counterparty_account_id, member.transfer_id, member.memo) == ("m1", "t3", MEMO)
    assert changes.movements[0].pending_delta_points == 0
    assert (changes.in_flight_added, changes.in_flight_removed) == ((), ())
    assert [(n.kind, n.account_id) for n in changes.notifications] == [("POINTS_SENT", "m1")]
    # The PointsPending is the sixth event of the log.
    assert changes.pending_issues == (PendingIssueRow("t3", "a1", "m1", 30, MEMO, 6),)
    assert rows.conserved()


def test_an_issue_cut_after_its_debit_is_in_flight_until_it_arrives_pending() -> None:
    """Between the merchant's debit and the PointsPending, the points are in flight."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("m1", "acme", kind=2), log.opened("a1", "other")])
    rows.apply([log.minted("m1", 100, after=100)])
    initiated, debited, pending, completed = log.pending_issue(
        "m1", "a1", 30, merchant_after=70, pending_after=30
    )
    first = rows.apply([initiated, debited])
    assert [(f.process_id, f.amount_points) for f in first.in_flight_added] == [("transfer-t3", 30)]
    assert rows.conserved()
    second = rows.apply([pending])
    assert second.in_flight_removed == ("transfer-t3",)
    assert rows.conserved()
    rows.apply([completed])
    assert rows.in_flight == {}
    assert rows.pending_issues["t3"].amount_points == 30


def test_an_activation_makes_pending_points_available_and_names_the_issuer() -> None:
    """PointsActivated: pending down, available up, POINTS_RECEIVED from the issuing merchant."""
    log, rows = Log(), Rows()
    issue = _issued(log, rows)
    activation = log.activated("a1", issue, 30, available_after=30, pending_after=0)
    assert keys_of([activation]).pending_issue_ids == [issue]
    changes = rows.apply([activation])
    (movement,) = changes.movements
    assert movement.kind == "POINTS_ACTIVATED"
    assert (movement.available_delta_points, movement.pending_delta_points) == (30, -30)
    assert (movement.available_points, movement.pending_points) == (30, 0)
    assert (movement.counterparty_account_id, movement.transfer_id, movement.memo) == (
        "m1",
        issue,
        MEMO,
    )
    (notification,) = changes.notifications
    assert (notification.kind, notification.owner_partner_id) == ("POINTS_RECEIVED", "other")
    details = _details(notification.body)
    assert details.movement_kind == common_pb2.MOVEMENT_KIND_POINTS_ACTIVATED
    assert (details.amount_points, details.available_points) == (30, 30)
    assert (details.counterparty_account_id, details.transfer_id) == ("m1", issue)
    assert (changes.pending_issues, changes.pending_issues_removed) == ((), (issue,))
    assert rows.pending_issues == {}
    assert rows.conserved()


def test_a_reversal_takes_pending_points_back_and_leaves_available_unchanged() -> None:
    """A REVERSE_ISSUE debit naming the issue: pending down, available kept; the rest activates."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("m1", "acme", kind=2), log.opened("a1", "other")])
    rows.apply([log.minted("m1", 100, after=100), *log.transfer("m1", "a1", 10, 90, 10)])
    events = log.pending_issue("m1", "a1", 30, merchant_after=60, pending_after=30)
    rows.apply(events)
    issue = events[0].transfer_initiated.transfer_id
    initiated, debited, credited, completed = log.reverse_pending(
        "a1", "m1", issue, 12, member_available=10, merchant_after=72
    )
    assert keys_of([debited]).pending_issue_ids == [issue]
    first = rows.apply([initiated, debited])
    (movement,) = first.movements
    assert movement.kind == "REVERSE_ISSUE_OUT"
    assert (movement.available_delta_points, movement.pending_delta_points) == (0, -12)
    assert (movement.available_points, movement.pending_points) == (10, 18)
    assert [(f.process_id, f.amount_points) for f in first.in_flight_added] == [
        (f"transfer-{initiated.transfer_initiated.transfer_id}", 12)
    ]
    sent = _details(first.notifications[0].body)
    assert (first.notifications[0].kind, sent.amount_points) == ("POINTS_SENT", 12)
    assert sent.movement_kind == common_pb2.MOVEMENT_KIND_REVERSE_ISSUE_OUT
    assert [(i.transfer_id, i.amount_points) for i in first.pending_issues] == [(issue, 18)]
    assert rows.conserved()
    second = rows.apply([credited, completed])
    assert [(m.kind, m.available_delta_points) for m in second.movements] == [
        ("REVERSE_ISSUE_IN", 12)
    ]
    assert rows.conserved()
    rows.apply([log.activated("a1", issue, 18, available_after=28, pending_after=0)])
    assert (rows.accounts["a1"].available_points, rows.accounts["a1"].pending_points) == (28, 0)
    assert rows.pending_issues == {}
    assert rows.conserved()


def test_a_reversal_of_every_pending_point_ends_the_issue() -> None:
    """All of an issue's pending points taken back: its row goes, and no activation may follow."""
    log, rows = Log(), Rows()
    issue = _issued(log, rows)
    changes = rows.apply(
        log.reverse_pending("a1", "m1", issue, 30, member_available=0, merchant_after=100)
    )
    assert (changes.pending_issues, changes.pending_issues_removed) == ((), (issue,))
    assert rows.accounts["a1"].pending_points == 0
    assert rows.conserved()
    with pytest.raises(AssertionError):
        rows.apply([log.activated("a1", issue, 30, available_after=30, pending_after=0)])


def test_an_issue_that_arrives_and_activates_in_one_batch_stores_no_pending_issue() -> None:
    """Arrival and activation in one batch: the balances move, no pending-issue row is written."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("m1", "acme", kind=2), log.opened("a1", "other")])
    rows.apply([log.minted("m1", 100, after=100)])
    events = log.pending_issue("m1", "a1", 30, merchant_after=70, pending_after=30)
    issue = events[0].transfer_initiated.transfer_id
    activation = log.activated("a1", issue, 30, available_after=30, pending_after=0)
    changes = rows.apply([*events, activation])
    assert (changes.pending_issues, changes.pending_issues_removed) == ((), ())
    assert [m.kind for m in changes.movements] == ["ISSUE_OUT", "ISSUE_PENDING", "POINTS_ACTIVATED"]
    assert rows.accounts["a1"].available_points == 30
    assert rows.conserved()


def _pending_stated_wrong(log: Log, _issue: str) -> list[events_pb2.Event]:
    return log.pending_issue("m1", "a1", 5, merchant_after=65, pending_after=5)


def _activation_pending_wrong(log: Log, issue: str) -> list[events_pb2.Event]:
    return [log.activated("a1", issue, 30, available_after=30, pending_after=1)]


def _activation_available_wrong(log: Log, issue: str) -> list[events_pb2.Event]:
    return [log.activated("a1", issue, 30, available_after=31, pending_after=0)]


def _activation_of_part_of_the_issue(log: Log, issue: str) -> list[events_pb2.Event]:
    # The balances agree with the amount; only the issue's 30 left does not.
    return [log.activated("a1", issue, 20, available_after=20, pending_after=10)]


def _activation_of_an_unknown_issue(log: Log, _issue: str) -> list[events_pb2.Event]:
    return [log.activated("a1", "nowhere", 30, available_after=30, pending_after=0)]


def _reversal_lowering_available(log: Log, issue: str) -> list[events_pb2.Event]:
    # From pending, the available points must stay as they were (0).
    events = log.reverse_pending("a1", "m1", issue, 10, member_available=0, merchant_after=80)
    events[1].points_debited.available_points = -10
    return events


def _reversal_beyond_the_issue(log: Log, issue: str) -> list[events_pb2.Event]:
    # The account has 35 pending, so only the issue's 30 left refuses 31.
    other = log.pending_issue("m1", "a1", 5, merchant_after=65, pending_after=35)
    taken = log.reverse_pending("a1", "m1", issue, 31, member_available=0, merchant_after=96)
    return [*other, *taken]


def _closed_with_pending_points(log: Log, _issue: str) -> list[events_pb2.Event]:
    return [log.closed("a1")]


@pytest.mark.parametrize(
    "wrong",
    [
        _pending_stated_wrong,
        _activation_pending_wrong,
        _activation_available_wrong,
        _activation_of_part_of_the_issue,
        _activation_of_an_unknown_issue,
        _reversal_lowering_available,
        _reversal_beyond_the_issue,
        _closed_with_pending_points,
    ],
)
def test_pending_balances_that_disagree_with_the_events_stop_the_projection(
    wrong: Callable[[Log, str], list[events_pb2.Event]],
) -> None:
    """Paired assertions: pending points, the issue's amount left and closing all agree."""
    log, rows = Log(), Rows()
    issue = _issued(log, rows)
    with pytest.raises(AssertionError):
        rows.apply(wrong(log, issue))


steps = st.lists(
    st.tuples(
        st.sampled_from(["issue", "reverse", "activate"]), st.integers(0, 1), st.integers(1, 40)
    ),
    max_size=25,
)


def _pending_log(chosen: list[tuple[str, int, int]]) -> list[events_pb2.Event]:
    """Build a log of pending issues, reversals from pending and activations for two members."""
    log = Log()
    events = [log.opened("m1", "acme", kind=2), log.opened("a0", "x"), log.opened("a1", "x")]
    events.append(log.minted("m1", 500, after=500))
    merchant = 500
    available = {"a0": 0, "a1": 0}
    pending = {"a0": 0, "a1": 0}
    open_issues: dict[str, tuple[str, int]] = {}  # issue -> (member, points left)
    for action, index, amount in chosen:
        member = f"a{index}"
        mine = [i for i, (owner, _) in open_issues.items() if owner == member]
        if action == "issue" and merchant >= amount:
            merchant -= amount
            pending[member] += amount
            issued = log.pending_issue(
                "m1", member, amount, merchant_after=merchant, pending_after=pending[member]
            )
            open_issues[issued[0].transfer_initiated.transfer_id] = (member, amount)
            events += issued
        elif action == "reverse" and mine:
            left = open_issues[mine[0]][1]
            taken = min(amount, left)
            merchant += taken
            pending[member] -= taken
            open_issues[mine[0]] = (member, left - taken)
            if taken == left:
                del open_issues[mine[0]]
            events += log.reverse_pending(
                member,
                "m1",
                mine[0],
                taken,
                member_available=available[member],
                merchant_after=merchant,
            )
        elif action == "activate" and mine:
            left = open_issues.pop(mine[0])[1]
            available[member] += left
            pending[member] -= left
            events.append(
                log.activated(
                    member,
                    mine[0],
                    left,
                    available_after=available[member],
                    pending_after=pending[member],
                )
            )
    return events


@settings(max_examples=60, deadline=None)
@given(chosen=steps, cuts=st.lists(st.integers(1, 200), max_size=10))
def test_conservation_with_pending_points_holds_however_the_log_is_cut(
    chosen: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    """I1 with pending holds after every batch, and the rows do not depend on the cut."""
    events = _pending_log(chosen)
    cut_rows, whole_rows = Rows(), Rows()
    whole_rows.apply(events)
    start = 0
    for cut in [*sorted(set(cuts)), len(events)]:
        end = min(cut, len(events))
        if start < end:
            cut_rows.apply(events[start:end])
            assert cut_rows.conserved()
            start = end
    assert {k: dataclasses.asdict(v) for k, v in cut_rows.accounts.items()} == {
        k: dataclasses.asdict(v) for k, v in whole_rows.accounts.items()
    }
    assert cut_rows.pending_issues == whole_rows.pending_issues
    assert cut_rows.notifications == whole_rows.notifications
