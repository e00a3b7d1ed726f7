"""Program expiry in the pure projections: lapsed points, the notice before, conservation.

A member's earned points lapse in lots (domain/lots.py). `PointsExpired` lowers the account's
available points by what lapsed, writes an EXPIRED movement and a POINTS_EXPIRED notification,
and counts the points out of circulation apart from burns (`expired_points`), so that I1 and
CheckInvariants stay balanced. `PointsExpiringSoon` tells the member (POINTS_EXPIRING_SOON)
and moves nothing. Hypothesis checks that I1 holds after every batch however a log with
expiries is cut, and that the cut does not change the rows.

The story: merchant m1 (acme) mints 1,000 and issues 100 to member a1 (other).
"""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server.domain import events as domain_events
from pointex.server.domain.lots import Lot
from pointex.server.domain.values import Instant
from pointex.server.eventstore import codec
from pointex.server.query import invariants, views
from pointex.server.query.projections import project_batch
from pointex.server.query.projections.batch import UnknownAccountEvent
from pointex.server.query.readstore.port import Audit, Changes, NotificationRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.feed_events import AT_US, Log
from tests.unit.test_projections import Rows

# Seconds since the epoch: the lots below were earned at T0 and lapse at T0 + 100 s, within
# the story's time (the Log records event n at AT_US + n seconds).
T0 = AT_US // 1_000_000 - 1_000
LAPSES_AT = T0 + 100
NOTICE_FIRST, NOTICE_LAST = T0 + 5_000, T0 + 9_000


def _stamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def lot(amount: int, *, earned: int = T0, expires: int = LAPSES_AT) -> common_pb2.Lot:
    """A lot of `amount` points earned at `earned` that lapses at `expires` (seconds)."""
    return common_pb2.Lot(
        earned_at=_stamp(earned), expires_at=_stamp(expires), amount_points=amount
    )


def expired(
    log: Log,
    account_id: str,
    amount: int,
    after: int,
    lots: list[common_pb2.Lot] | None = None,
) -> events_pb2.Event:
    """PointsExpired of one lot of `amount` (or of `lots`), decided after they lapsed."""
    payload = events_pb2.PointsExpired(
        account_id=account_id,
        amount_points=amount,
        available_points=after,
        lots=[lot(amount)] if lots is None else lots,
        decided_at=_stamp(LAPSES_AT + 1),
    )
    return log.event(f"account-{account_id}", "points_expired", payload)


def expiring_soon(
    log: Log, account_id: str, amount: int, first: int = NOTICE_FIRST, last: int = NOTICE_LAST
) -> events_pb2.Event:
    """PointsExpiringSoon of `amount` points lapsing between `first` and `last` (seconds)."""
    payload = events_pb2.PointsExpiringSoon(
        account_id=account_id,
        amount_points=amount,
        first_expires_at=_stamp(first),
        last_expires_at=_stamp(last),
    )
    return log.event(f"account-{account_id}", "points_expiring_soon", payload)


def issued(log: Log) -> list[events_pb2.Event]:
    """m1 and a1 opened; m1 mints 1,000 and issues a1 100 (m1 900, a1 100)."""
    return [
        log.opened("m1", "acme", kind=2),
        log.opened("a1", "other"),
        log.minted("m1", 1000, after=1000),
        *log.transfer("m1", "a1", 100, 900, 100, kind=common_pb2.TRANSFER_KIND_ISSUE),
    ]


class ExpiryRows(Rows):
    """The pure read models, also counting expired points: I1 with expiry."""

    def __init__(self) -> None:
        """Start empty at checkpoint 0, nothing expired."""
        super().__init__()
        self.expired = 0

    def apply(self, events: list[events_pb2.Event]) -> Changes:
        """Project a batch, keeping its expired points too."""
        changes = super().apply(events)
        self.expired += changes.expired_points
        return changes

    def audit(self, *, expired: int | None = None) -> Audit:
        """Return the figures CheckInvariants judges (`expired` overrides the counted ones)."""
        accounts = self.accounts.values()
        return Audit(
            position=self.position,
            minted_points=self.minted,
            burned_points=self.burned,
            expired_points=self.expired if expired is None else expired,
            available_points=sum(a.available_points for a in accounts),
            held_points=sum(a.held_points for a in accounts),
            pending_points=sum(a.pending_points for a in accounts),
            in_flight_points=sum(self.in_flight.values()),
            account_count=len(self.accounts),
        )

    def conserved(self) -> bool:
        """Return whether CheckInvariants finds I1 (and every other invariant) holding."""
        return invariants.check(self.audit(), 10).ok


def _notice(row: NotificationRow) -> query_service_pb2.Notification:
    return query_service_pb2.Notification.FromString(row.body)


EXPIRED_KIND = "MOVEMENT_KIND_EXPIRED"


def test_an_expiry_lowers_available_points_and_writes_an_expired_movement() -> None:
    """a1 100 -> 70: an EXPIRED movement of -30, the version moves, 30 expired, none burned."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    before = rows.accounts["a1"]
    changes = rows.apply([expired(log, "a1", 30, after=70)])
    (account,) = changes.accounts
    assert (account.account_id, account.available_points, account.held_points) == ("a1", 70, 0)
    assert account.version == before.version + 1
    (move,) = changes.movements
    assert (move.kind, move.available_delta_points, move.available_points) == ("EXPIRED", -30, 70)
    assert (move.held_delta_points, move.pending_delta_points, move.fee_points) == (0, 0, 0)
    assert (move.counterparty_account_id, move.transfer_id) == ("", "")
    assert (changes.expired_points, changes.burned_points, changes.minted_points) == (30, 0, 0)
    assert views.movement_message(move).kind == common_pb2.MovementKind.Value(EXPIRED_KIND)


def test_an_expiry_notifies_the_owner_with_what_lapsed_and_what_is_left() -> None:
    """POINTS_EXPIRED to a1's owner: movement kind EXPIRED, 30 points, 70 available."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    changes = rows.apply([expired(log, "a1", 30, after=70)])
    (row,) = changes.notifications
    assert (row.kind, row.account_id, row.owner_partner_id, row.index) == (
        "POINTS_EXPIRED",
        "a1",
        "other",
        0,
    )
    notice = _notice(row)
    assert notice.kind == query_service_pb2.NOTIFICATION_KIND_POINTS_EXPIRED
    moved = notice.points_moved
    assert moved.movement_kind == common_pb2.MovementKind.Value(EXPIRED_KIND)
    assert (moved.amount_points, moved.available_points, moved.counterparty_account_id) == (
        30,
        70,
        "",
    )


def test_expired_points_leave_circulation_so_check_invariants_stays_balanced() -> None:
    """After 30 lapse, I1 holds with them out; counted as still circulating it would not."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    rows.apply([expired(log, "a1", 30, after=70), log.burned("m1", 50, after=850)])
    answer = invariants.check(rows.audit(), 10)
    assert answer.ok, answer
    assert (answer.minted_points, answer.burned_points, answer.expired_points) == (1000, 50, 30)
    assert answer.available_points == 920
    # Without the expired points, the supply is 30 above what the accounts hold: I1 fails.
    broken = invariants.check(rows.audit(expired=0), 10)
    assert not broken.ok
    (violation,) = broken.violations
    assert violation.invariant == query_service_pb2.INVARIANT_CONSERVATION
    assert (violation.expected_points, violation.actual_points) == (950, 920)


def test_points_expiring_soon_notify_the_owner_and_move_nothing() -> None:
    """POINTS_EXPIRING_SOON of 60 (first and last lapse): no movement, balances unchanged."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    before = rows.accounts["a1"]
    changes = rows.apply([expiring_soon(log, "a1", 60)])
    (account,) = changes.accounts
    assert account == dataclasses.replace(
        before, version=before.version + 1, updated_at_us=account.updated_at_us
    )
    assert account.updated_at_us > before.updated_at_us
    assert changes.movements == ()
    assert (changes.expired_points, changes.burned_points) == (0, 0)
    (row,) = changes.notifications
    assert (row.kind, row.account_id, row.owner_partner_id) == (
        "POINTS_EXPIRING_SOON",
        "a1",
        "other",
    )
    notice = _notice(row)
    assert notice.kind == query_service_pb2.NOTIFICATION_KIND_POINTS_EXPIRING_SOON
    assert notice.WhichOneof("details") == "points_expiring_soon"
    soon = notice.points_expiring_soon
    assert soon.amount_points == 60
    assert (soon.first_expires_at.seconds, soon.last_expires_at.seconds) == (
        NOTICE_FIRST,
        NOTICE_LAST,
    )
    assert rows.conserved()


def test_a_notice_then_the_expiry_in_one_batch_notify_in_log_order() -> None:
    """Soon, then expired, then soon again: three notifications, positions ascending."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    changes = rows.apply(
        [
            expiring_soon(log, "a1", 40, NOTICE_FIRST, NOTICE_FIRST),
            expired(log, "a1", 40, after=60),
            expiring_soon(log, "a1", 60),
        ]
    )
    assert [(n.kind, n.index) for n in changes.notifications] == [
        ("POINTS_EXPIRING_SOON", 0),
        ("POINTS_EXPIRED", 0),
        ("POINTS_EXPIRING_SOON", 0),
    ]
    positions = [n.position for n in changes.notifications]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert [m.kind for m in changes.movements] == ["EXPIRED"]
    assert rows.accounts["a1"].available_points == 60
    assert rows.conserved()


def test_the_command_sides_own_expiry_event_projects() -> None:
    """PointsExpired as the account encodes it (codec): two lots, decided when they lapsed."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    lapsed = (
        Lot(Instant(T0 * 1000), Instant(LAPSES_AT * 1000), 25),
        Lot(Instant((T0 + 1) * 1000), Instant((LAPSES_AT + 1) * 1000), 15),
    )
    event = domain_events.PointsExpired("a1", 40, 60, lapsed, Instant((LAPSES_AT + 1) * 1000))
    payload = events_pb2.PointsExpired.FromString(codec.encode(event).data)
    changes = rows.apply([log.event("account-a1", "points_expired", payload)])
    (move,) = changes.movements
    assert (move.kind, move.available_delta_points, move.available_points) == ("EXPIRED", -40, 60)
    assert changes.expired_points == 40
    assert rows.conserved()


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"available_points": 71}, id="another-balance"),
        pytest.param({"lots": [lot(20)]}, id="lots-short-of-the-amount"),
        pytest.param({"lots": [lot(30, expires=LAPSES_AT + 10)]}, id="lot-not-due"),
        pytest.param({"amount_points": 0, "available_points": 100, "lots": []}, id="nothing"),
    ],
)
def test_an_expiry_that_disagrees_with_itself_stops_the_projection(
    broken: dict[str, object],
) -> None:
    """Paired checks: the balance it states, lots adding up to the amount, each lot due."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    event = expired(log, "a1", 30, after=70)
    for name, value in broken.items():
        if name == "lots":
            del event.points_expired.lots[:]
            event.points_expired.lots.extend(value)  # type: ignore[arg-type]
        else:
            setattr(event.points_expired, name, value)
    with pytest.raises(AssertionError):
        rows.apply([event])


def test_an_expiry_of_more_than_the_account_has_stops_the_projection() -> None:
    """Only available points lapse: an expiry taking a1 below zero is a bug upstream."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    with pytest.raises(AssertionError):
        rows.apply([expired(log, "a1", 130, after=-30)])


def test_a_notice_of_more_points_than_the_account_has_stops_the_projection() -> None:
    """The lots told of are points the account has: 101 on an account of 100 is a bug."""
    log, rows = Log(), ExpiryRows()
    rows.apply(issued(log))
    with pytest.raises(AssertionError):
        rows.apply([expiring_soon(log, "a1", 101)])


def test_an_unknown_event_on_an_account_stream_stops_the_projection() -> None:
    """An account event this release cannot read is never passed over (nor its balance)."""
    log = Log()
    opened = log.opened("a1", "acme")
    unknown = log.event("account-a1", "transfer_completed", events_pb2.TransferCompleted())
    with pytest.raises(UnknownAccountEvent, match="account-a1"):
        project_batch([opened, unknown], {}, 0)
    # A newer release's payload (a oneof field this one does not know) is stopped the same.
    unread = events_pb2.Event.FromString(unknown.SerializeToString())
    unread.ClearField("transfer_completed")
    with pytest.raises(UnknownAccountEvent):
        project_batch([opened, unread], {}, 0)


members = ["a0", "a1", "a2"]
steps = st.lists(
    st.tuples(
        st.sampled_from(["issue", "give", "expire", "soon", "burn"]),
        st.integers(0, 2),  # a member
        st.integers(0, 2),  # another member (give)
        st.integers(1, 80),  # an amount
    ),
    max_size=30,
)


def _expiry_log(moves: list[tuple[str, int, int, int]]) -> tuple[list[events_pb2.Event], int]:
    """Return a log of issues, gifts, expiries, notices and burns, and the points expired."""
    log = Log()
    events = [log.opened("m1", "acme", kind=2), *(log.opened(m, "other") for m in members)]
    events.append(log.minted("m1", 1000, after=1000))
    balances = dict.fromkeys(["m1", *members], 0)
    balances["m1"] = 1000
    expired_total = 0
    for step, i, j, amount in moves:
        member, other = members[i], members[j]
        if step == "issue" and balances["m1"] >= amount:
            balances["m1"] -= amount
            balances[member] += amount
            issue = common_pb2.TRANSFER_KIND_ISSUE
            events += log.transfer(
                "m1", member, amount, balances["m1"], balances[member], kind=issue
            )
        elif step == "give" and member != other and balances[member] >= amount:
            balances[member] -= amount
            balances[other] += amount
            events += log.transfer(member, other, amount, balances[member], balances[other])
        elif step == "expire" and balances[member] >= amount:
            balances[member] -= amount
            expired_total += amount
            events.append(expired(log, member, amount, balances[member]))
        elif step == "soon" and balances[member] >= amount:
            events.append(expiring_soon(log, member, amount))
        elif step == "burn" and balances["m1"] >= amount:
            balances["m1"] -= amount
            events.append(log.burned("m1", amount, balances["m1"]))
    return events, expired_total


@settings(max_examples=60, deadline=None)
@given(moves=steps, cuts=st.lists(st.integers(1, 150), max_size=10))
def test_expiries_conserve_points_and_replay_equal_however_the_log_is_cut(
    moves: list[tuple[str, int, int, int]], cuts: list[int]
) -> None:
    """CheckInvariants passes after every batch of any cut; a cut log projects the same rows."""
    events, expired_total = _expiry_log(moves)
    cut_rows, whole_rows = ExpiryRows(), ExpiryRows()
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
    assert cut_rows.notifications == whole_rows.notifications
    assert cut_rows.movements == whole_rows.movements
    assert cut_rows.expired == whole_rows.expired == expired_total
    assert cut_rows.in_flight == whole_rows.in_flight == {}
