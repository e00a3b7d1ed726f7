"""The projections are pure: feed events in, row changes out, checked against the events.

Examples cover each event the projections read; Hypothesis checks that conservation (I1)
holds after every batch, however the log is cut into batches, and that the cut does not
change the result (a replay equals the live projection).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server.query.projections import account_ids_of, keys_of, project_batch
from pointex.server.query.projections.batch import UnknownSchemaVersion
from pointex.server.query.readstore.port import AccountRow, Changes, InFlightRow, PendingIssueRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests.feed_events import Log


class Rows:
    """The read models as dictionaries: enough to chain batches in a pure test."""

    def __init__(self) -> None:
        """Start empty at checkpoint 0."""
        self.position = 0
        self.accounts: dict[str, AccountRow] = {}
        self.in_flight: dict[str, int] = {}
        self.in_flight_rows: dict[str, InFlightRow] = {}
        self.minted = 0
        self.burned = 0
        self.movements = 0
        self.notifications: list[tuple[int, int]] = []
        self.pending_issues: dict[str, PendingIssueRow] = {}

    def apply(self, events: list[events_pb2.Event]) -> Changes:
        """Project a batch against these rows and keep its changes."""
        known = {i: self.accounts[i] for i in account_ids_of(events) if i in self.accounts}
        keys = keys_of(events)
        issues = {
            i: self.pending_issues[i] for i in keys.pending_issue_ids if i in self.pending_issues
        }
        flying = {i: self.in_flight_rows[i] for i in keys.in_flight_ids if i in self.in_flight_rows}
        changes = project_batch(
            events, known, self.position, pending_issues=issues, in_flight=flying
        )
        self.position = changes.position
        self.pending_issues.update({row.transfer_id: row for row in changes.pending_issues})
        for transfer_id in changes.pending_issues_removed:
            del self.pending_issues[transfer_id]
        self.accounts.update({row.account_id: row for row in changes.accounts})
        for row in changes.in_flight_added:
            self.in_flight[row.process_id] = row.amount_points
            self.in_flight_rows[row.process_id] = row
        for process_id in changes.in_flight_removed:
            del self.in_flight[process_id]
            del self.in_flight_rows[process_id]
        self.minted += changes.minted_points
        self.burned += changes.burned_points
        self.movements += len(changes.movements)
        self.notifications += [(n.position, n.index) for n in changes.notifications]
        return changes

    def conserved(self) -> bool:
        """Return whether I1 holds over these rows, and pending issues add up to pending points."""
        accounts = self.accounts.values()
        held = sum(a.available_points + a.held_points + a.pending_points for a in accounts)
        issues = sum(i.amount_points for i in self.pending_issues.values())
        if issues != sum(a.pending_points for a in accounts):
            return False
        return held + sum(self.in_flight.values()) == self.minted - self.burned


def test_mint_transfer_and_burn_move_balances_and_write_history() -> None:
    """Each movement updates its account, records its kind and deltas, and notifies the owner."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("m1", "acme", kind=2), log.opened("a1", "other")])
    changes = rows.apply(
        [
            log.minted("m1", 100, after=100),
            *log.transfer("m1", "a1", 40, 60, 40),
            log.burned("m1", 10, after=50),
        ]
    )
    assert {a.account_id: a.available_points for a in changes.accounts} == {"m1": 50, "a1": 40}
    assert [m.kind for m in changes.movements] == ["MINT", "TRANSFER_OUT", "TRANSFER_IN", "BURN"]
    assert [m.available_delta_points for m in changes.movements] == [100, -40, 40, -10]
    assert (changes.minted_points, changes.burned_points) == (100, 10)
    assert changes.in_flight_added == ()
    assert changes.in_flight_removed == ()
    kinds = [(n.kind, n.owner_partner_id) for n in changes.notifications]
    assert kinds == [
        ("POINTS_MINTED", "acme"),
        ("POINTS_SENT", "acme"),
        ("POINTS_RECEIVED", "other"),
        ("POINTS_BURNED", "acme"),
    ]
    received = query_service_pb2.Notification.FromString(changes.notifications[2].body)
    assert received.points_moved.counterparty_account_id == "m1"
    assert received.points_moved.available_points == 40
    assert rows.conserved()


def test_a_transfer_cut_between_debit_and_credit_is_in_flight() -> None:
    """Points debited in one batch and credited in the next are in flight in between."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("a1", "acme"), log.opened("b1", "acme"), log.minted("a1", 9, after=9)])
    initiated, debited, credited, completed = log.transfer("a1", "b1", 4, 5, 4)
    first = rows.apply([initiated, debited])
    assert [(f.process_id, f.amount_points) for f in first.in_flight_added] == [("transfer-t3", 4)]
    assert rows.conserved()
    second = rows.apply([credited])
    assert second.in_flight_removed == ("transfer-t3",)
    assert rows.conserved()
    rows.apply([completed])
    assert rows.in_flight == {}


def test_a_returned_transfer_credits_the_source_back() -> None:
    """PointsReturned is a TRANSFER_RETURNED movement and a POINTS_RETURNED notification."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("a1", "acme"), log.minted("a1", 9, after=9)])
    changes = rows.apply(log.returned_transfer("a1", "gone", 4, 5))
    assert [m.kind for m in changes.movements] == ["TRANSFER_OUT", "TRANSFER_RETURNED"]
    assert [n.kind for n in changes.notifications] == ["POINTS_SENT", "POINTS_RETURNED"]
    assert rows.accounts["a1"].available_points == 9
    assert rows.conserved()


def test_status_changes_set_status_role_and_notify() -> None:
    """Freeze, unfreeze and close change the status, the freezing role and notify the owner."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("a1", "acme")])
    frozen = rows.apply([log.frozen("a1", "fraud")])
    assert (frozen.accounts[0].status, frozen.accounts[0].frozen_by_role) == ("FROZEN", "OPERATOR")
    details = query_service_pb2.Notification.FromString(frozen.notifications[0].body)
    assert details.account_status.reason == "fraud"
    changes = rows.apply([log.unfrozen("a1"), log.closed("a1")])
    assert [n.kind for n in changes.notifications] == ["ACCOUNT_UNFROZEN", "ACCOUNT_CLOSED"]
    assert rows.accounts["a1"].status == "CLOSED"
    assert rows.accounts["a1"].frozen_by_role == ""
    assert rows.accounts["a1"].version == 4


def test_a_tier_set_and_cleared_shows_on_the_account_and_bumps_its_version() -> None:
    """AccountTierSet sets the tier (empty clears it) and counts as an account event."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("a1", "acme"), log.minted("a1", 9, after=9)])
    assert rows.accounts["a1"].tier == ""
    gold = log.tier_set("a1", "gold")
    changes = rows.apply([gold])
    (account,) = changes.accounts
    assert (account.tier, account.version) == ("gold", 3)
    assert account.updated_at_us == gold.recorded_at.ToMicroseconds()
    assert account.available_points == 9
    assert (changes.movements, changes.notifications) == ((), ())
    rows.apply([log.tier_set("a1", ""), log.minted("a1", 1, after=10)])
    assert (rows.accounts["a1"].tier, rows.accounts["a1"].version) == ("", 5)


def test_a_tier_set_out_of_version_order_stops_the_projection() -> None:
    """A tier event that does not follow the account's version is never applied."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("a1", "acme")])
    log.tier_set("a1", "lost")
    with pytest.raises(AssertionError):
        rows.apply([log.tier_set("a1", "gold")])


def _limit(max_points: int) -> common_pb2.TransactionLimit:
    return common_pb2.TransactionLimit(
        operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=max_points
    )


def test_the_latest_program_rules_are_in_force_with_their_version() -> None:
    """Two ProgramRulesSet in one batch: the second is the row, at version 2."""
    log = Log()
    first, second = log.program_rules_set(_limit(100)), log.program_rules_set(_limit(250))
    keys = keys_of([log.recorded("k"), first, second])
    assert keys.program_rules
    assert keys.account_ids == []
    changes = project_batch([first, second], {}, 0)
    rules = changes.program_rules
    assert rules is not None
    assert (rules.version, rules.position, rules.set_at_us) == (
        2,
        2,
        second.recorded_at.ToMicroseconds(),
    )
    assert common_pb2.ProgramRules.FromString(rules.body) == second.program_rules_set.rules
    assert changes.accounts == ()


def test_program_rules_continue_from_the_rules_in_force() -> None:
    """A later batch's change follows the version loaded; a batch without one changes nothing."""
    log = Log()
    first = project_batch([log.program_rules_set(_limit(100))], {}, 0).program_rules
    assert first is not None
    opened = log.opened("a1", "acme")
    assert not keys_of([opened]).program_rules
    assert project_batch([opened], {}, 1, program_rules=first).program_rules is None
    later = project_batch([log.program_rules_set()], {}, 2, program_rules=first).program_rules
    assert later is not None
    assert later.version == 2
    assert common_pb2.ProgramRules.FromString(later.body) == common_pb2.ProgramRules()


def test_program_rules_out_of_version_order_stop_the_projection() -> None:
    """A change that does not follow the rules in force (one was skipped) is never applied."""
    log = Log()
    log.program_rules_set(_limit(100))
    with pytest.raises(AssertionError):
        project_batch([log.program_rules_set(_limit(250))], {}, 1)


def test_events_not_projected_still_advance_the_checkpoint() -> None:
    """Idempotency records (and market events) change no row but count in the batch."""
    log, rows = Log(), Rows()
    changes = rows.apply([log.recorded("k1"), log.recorded("k2")])
    assert (changes.after_position, changes.position, changes.events) == (0, 2, 2)
    assert changes.accounts == ()


def test_a_balance_that_disagrees_with_the_event_stops_the_projection() -> None:
    """Paired assertion: the computed balance must equal the one the event states."""
    log, rows = Log(), Rows()
    rows.apply([log.opened("a1", "acme")])
    with pytest.raises(AssertionError):
        rows.apply([log.minted("a1", 5, after=6)])


def test_a_gap_in_positions_stops_the_projection() -> None:
    """A batch that does not continue the checkpoint is a bug upstream."""
    log = Log()
    events = [log.opened("a1", "acme"), log.opened("b1", "acme")]
    with pytest.raises(AssertionError):
        project_batch(events[1:], {}, 0)


def test_a_newer_schema_version_stops_the_projection() -> None:
    """An event this release cannot read is never skipped."""
    log = Log()
    event = log.opened("a1", "acme")
    event.schema_version = 2
    with pytest.raises(UnknownSchemaVersion):
        project_batch([event], {}, 0)


transfers = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 50)), max_size=30
)


@settings(max_examples=60, deadline=None)
@given(moves=transfers, cuts=st.lists(st.integers(1, 200), max_size=10))
def test_conservation_holds_after_every_batch_however_the_log_is_cut(
    moves: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    """I1 holds after every batch, and the rows do not depend on where batches end."""
    log = Log()
    names = [f"a{i}" for i in range(4)]
    events = [log.opened(name, "acme") for name in names]
    balances = dict.fromkeys(names, 0)
    for name in names:
        balances[name] = 100
        events.append(log.minted(name, 100, after=100))
    for source_index, target_index, amount in moves:
        source, target = names[source_index], names[target_index]
        if source == target or balances[source] < amount:
            continue
        balances[source] -= amount
        balances[target] += amount
        events += log.transfer(source, target, amount, balances[source], balances[target])
    cut_rows, whole_rows = Rows(), Rows()
    whole_rows.apply(events)
    start = 0
    for cut in [*sorted(set(cuts)), len(events)]:
        if start < min(cut, len(events)):
            cut_rows.apply(events[start : min(cut, len(events))])
            assert cut_rows.conserved()
            start = min(cut, len(events))
    assert {k: dataclasses.asdict(v) for k, v in cut_rows.accounts.items()} == {
        k: dataclasses.asdict(v) for k, v in whole_rows.accounts.items()
    }
    assert cut_rows.notifications == whole_rows.notifications
    assert {k: v.available_points for k, v in whole_rows.accounts.items()} == balances
