"""Transfer fees in the pure projections: every path of a fee, conservation, replay equality.

A member's TransferPoints under a fee schedule debits the points and the fee together; the
fee is in flight on its own until the fee account's FEE credit (FEE_IN) or, when that account
refuses it, its return to the source (FEE_RETURNED); a destination that refuses the transfer
returns both (TRANSFER_RETURNED of the points and the fee).

The story: fee account `fees` (a merchant of partner `ops`), members a1 (acme) and b1
(other); m1 funds a1 with 500. A transfer of 100 under flat 2 + 15 per mille pays
2 + ceil(1.5) = 4.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server.query.projections import keys_of, project_batch
from pointex.server.query.readstore.port import NotificationRow
from pointex.v1 import common_pb2, events_pb2, query_service_pb2
from tests import fee_events
from tests.fee_events import FeeTransfer
from tests.feed_events import Log
from tests.unit.test_projections import Rows

GIFT = FeeTransfer("a1", "b1", "fees", amount=100, fee=4)


def _funded(log: Log, rows: Rows) -> None:
    """Open m1, fees, a1 and b1; m1 mints 1,000 and gives a1 500."""
    rows.apply(
        [
            log.opened("m1", "acme", kind=2),
            log.opened("fees", "ops", kind=2),
            log.opened("a1", "acme"),
            log.opened("b1", "other"),
            log.minted("m1", 1000, after=1000),
            *log.transfer("m1", "a1", 500, 500, 500),
        ]
    )


def _moved(row: NotificationRow) -> query_service_pb2.PointsMovedDetails:
    """Return the PointsMovedDetails of a notification row."""
    return query_service_pb2.Notification.FromString(row.body).points_moved


def test_a_transfer_paying_a_fee_in_one_unit_debits_both_and_credits_the_fee_account() -> None:
    """TRANSFER_OUT of 104 (fee 4), TRANSFER_IN 100, FEE_IN 4 from a1; nothing stays in flight."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    changes = rows.apply(
        fee_events.one_unit(log, GIFT, source_after=396, target_after=100, fee_after=4)
    )
    moves = [
        (m.account_id, m.kind, m.available_delta_points, m.fee_points, m.counterparty_account_id)
        for m in changes.movements
    ]
    assert moves == [
        ("a1", "TRANSFER_OUT", -104, 4, "b1"),
        ("b1", "TRANSFER_IN", 100, 0, "a1"),
        ("fees", "FEE_IN", 4, 0, "a1"),
    ]
    assert {m.transfer_id for m in changes.movements} == {"t9"}
    balances = {a.account_id: a.available_points for a in changes.accounts}
    assert balances == {"a1": 396, "b1": 100, "fees": 4}
    assert (changes.in_flight_added, changes.in_flight_removed) == ((), ())
    assert rows.in_flight == {}
    assert rows.conserved()


def test_the_fee_account_hears_of_each_fee_and_the_sender_of_points_and_fee() -> None:
    """POINTS_SENT says 104 left a1; the fee account's owner gets POINTS_RECEIVED (FEE_IN)."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    changes = rows.apply(
        fee_events.one_unit(log, GIFT, source_after=396, target_after=100, fee_after=4)
    )
    told = [(n.kind, n.account_id, n.owner_partner_id) for n in changes.notifications]
    assert told == [
        ("POINTS_SENT", "a1", "acme"),
        ("POINTS_RECEIVED", "b1", "other"),
        ("POINTS_RECEIVED", "fees", "ops"),
    ]
    sent, _, fee = (_moved(n) for n in changes.notifications)
    assert (sent.amount_points, sent.available_points) == (104, 396)
    assert (fee.movement_kind, fee.amount_points, fee.counterparty_account_id) == (
        common_pb2.MOVEMENT_KIND_FEE_IN,
        4,
        "a1",
    )
    assert fee.transfer_id == "t9"


def test_each_step_keeps_the_fee_in_flight_until_the_fee_account_is_credited() -> None:
    """Step by step, one event a batch: points and fee in flight, then the fee, then nothing."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    steps = fee_events.step_by_step(log, GIFT, source_after=396, target_after=100, fee_after=4)
    in_flight = []
    for event in steps:
        rows.apply([event])
        assert rows.conserved(), event.WhichOneof("payload")
        in_flight.append(dict(rows.in_flight))
    assert in_flight == [
        {},
        {"transfer-t9": 100, "transfer-t9/fee": 4},
        {"transfer-t9/fee": 4},
        {"transfer-t9/fee": 4},
        {},
        {},
    ]
    assert (rows.accounts["a1"].available_points, rows.accounts["fees"].available_points) == (
        396,
        4,
    )


def test_a_fee_the_fee_account_refuses_comes_back_to_the_source() -> None:
    """FEE_RETURNED +4 on a1 with a POINTS_RETURNED; b1 keeps the 100; the fee account nothing."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    steps = fee_events.step_by_step(log, GIFT, source_after=396, target_after=100, fee_after=None)
    rows.apply(steps[:3])
    assert rows.in_flight == {"transfer-t9/fee": 4}
    changes = rows.apply(steps[3:])
    (back,) = changes.movements
    assert (back.account_id, back.kind, back.available_delta_points, back.available_points) == (
        "a1",
        "FEE_RETURNED",
        4,
        400,
    )
    assert (back.counterparty_account_id, back.transfer_id, back.fee_points) == ("fees", "t9", 0)
    (notice,) = changes.notifications
    assert (notice.kind, _moved(notice).movement_kind) == (
        "POINTS_RETURNED",
        common_pb2.MOVEMENT_KIND_FEE_RETURNED,
    )
    assert changes.in_flight_removed == ("transfer-t9/fee",)
    assert rows.in_flight == {}
    balances = {a: rows.accounts[a].available_points for a in ("a1", "b1", "fees")}
    assert balances == {"a1": 400, "b1": 100, "fees": 0}
    assert rows.conserved()


def test_a_refused_destination_returns_the_points_and_the_fee_together() -> None:
    """Across batches: TRANSFER_RETURNED of 104 settles both the points and the fee in flight."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    events = fee_events.refused(log, GIFT, source_after=396)
    rows.apply(events[:2])
    assert rows.in_flight == {"transfer-t9": 100, "transfer-t9/fee": 4}
    assert rows.conserved()
    changes = rows.apply(events[2:])
    (back,) = changes.movements
    assert (back.kind, back.available_delta_points, back.available_points) == (
        "TRANSFER_RETURNED",
        104,
        500,
    )
    assert set(changes.in_flight_removed) == {"transfer-t9", "transfer-t9/fee"}
    assert rows.in_flight == {}
    assert rows.conserved()


def test_keys_name_the_points_in_flight_a_batch_settles() -> None:
    """Returns name both keys of their transfer, fee credits the fee's; nothing else does."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    steps = fee_events.step_by_step(log, GIFT, source_after=396, target_after=100, fee_after=4)
    assert keys_of(steps[:4]).in_flight_ids == []
    assert keys_of(steps).in_flight_ids == ["transfer-t9/fee"]
    refused = fee_events.refused(log, GIFT, source_after=396)
    assert keys_of(refused).in_flight_ids == ["transfer-t15", "transfer-t15/fee"]


def test_a_return_without_its_points_in_flight_stops_the_projection() -> None:
    """A batch not given the stored points in flight it returns is never projected."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    events = fee_events.refused(log, GIFT, source_after=396)
    rows.apply(events[:2])
    source = {"a1": rows.accounts["a1"]}
    with pytest.raises(AssertionError, match="no points in flight"):
        project_batch(events[2:], source, rows.position)


def test_a_fee_credit_that_differs_from_the_fee_debited_stops_the_projection() -> None:
    """Paired check: the fee account takes exactly the fee the source paid."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    events = fee_events.one_unit(log, GIFT, source_after=396, target_after=100, fee_after=5)
    events[2].points_credited.amount_points = 5
    with pytest.raises(AssertionError):
        rows.apply(events)


def test_a_fee_on_a_debit_other_than_a_transfer_stops_the_projection() -> None:
    """Only a member-to-member TransferPoints pays a fee: a fee on a redemption is a bug."""
    log, rows = Log(), Rows()
    _funded(log, rows)
    events = fee_events.one_unit(log, GIFT, source_after=396, target_after=100, fee_after=4)
    events[0].points_debited.kind = common_pb2.TRANSFER_KIND_REDEEM
    with pytest.raises(AssertionError):
        rows.apply(events)


def _schedule(events: list[events_pb2.Event]) -> list[int]:
    """Project rules changes (from position 1) one batch each; return each fee version."""
    versions = []
    previous = None
    for after_position, event in enumerate(events):
        changes = project_batch([event], {}, after_position, program_rules=previous)
        previous = changes.program_rules
        assert previous is not None
        versions.append(previous.fee_schedule_version)
    return versions


def test_the_fee_schedule_version_moves_only_when_the_fee_changes() -> None:
    """Rules without a fee: 0; a fee: its version; other changes keep it; a new fee moves it."""
    log = Log()
    limit = common_pb2.TransactionLimit(
        operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=100
    )
    fee = fee_events.transfer_fee(2, 15, "fees")
    events = [
        fee_events.rules_set(log, None, limit),  # 1: no fee yet
        fee_events.rules_set(log, fee),  # 2: the fee is set
        fee_events.rules_set(log, fee, limit),  # 3: only the limits change
        fee_events.rules_set(log, fee_events.transfer_fee(2, 20, "fees")),  # 4: a new rate
        fee_events.rules_set(log, fee_events.transfer_fee(2, 20, "fees2")),  # 5: a new account
        fee_events.rules_set(log, None),  # 6: no fee any more
        fee_events.rules_set(log, common_pb2.TransferFee()),  # 7: an all-zero fee is none
    ]
    assert _schedule(events) == [0, 2, 2, 4, 5, 6, 6]
    # In one batch, the same versions: the last change's is stored.
    whole = project_batch(events, {}, 0).program_rules
    assert whole is not None
    assert (whole.version, whole.fee_schedule_version) == (7, 6)


transfers = st.lists(
    st.tuples(
        st.integers(0, 2),  # giver
        st.integers(0, 2),  # receiver
        st.integers(1, 60),  # amount
        st.sampled_from(["one_unit", "steps", "fee_refused", "refused"]),
    ),
    max_size=20,
)


def _fee_log(
    moves: list[tuple[int, int, int, str]],
) -> tuple[list[events_pb2.Event], dict[str, int]]:
    """Return a log of fee transfers among three funded members and the balances it ends at.

    The fee is flat 1 + 50 per mille of the amount, to the fee account `fees`.
    """
    log = Log()
    names = ["a0", "a1", "a2"]
    events = [log.opened("fees", "ops", kind=2), *(log.opened(name, "acme") for name in names)]
    events.append(fee_events.rules_set(log, fee_events.transfer_fee(1, 50, "fees")))
    balances = dict.fromkeys([*names, "fees"], 0)
    for name in names:
        balances[name] = 300
        events.append(log.minted(name, 300, after=300))
    for giver, receiver, amount, path in moves:
        source, target = names[giver], names[receiver]
        fee = 1 + -(-amount * 50 // 1000)
        if source == target or balances[source] < amount + fee:
            continue
        t = FeeTransfer(source, target, "fees", amount, fee)
        after = balances[source] - amount - fee
        if path == "refused":
            events += fee_events.refused(log, t, source_after=after)
            continue
        balances[source] = after
        balances[target] += amount
        if path == "fee_refused":
            balances[source] += fee
            events += fee_events.step_by_step(
                log, t, source_after=after, target_after=balances[target], fee_after=None
            )
            continue
        balances["fees"] += fee
        build = fee_events.one_unit if path == "one_unit" else fee_events.step_by_step
        events += build(
            log, t, source_after=after, target_after=balances[target], fee_after=balances["fees"]
        )
    return events, balances


@settings(max_examples=60, deadline=None)
@given(moves=transfers, cuts=st.lists(st.integers(1, 150), max_size=10))
def test_fees_conserve_points_and_replay_equal_however_the_log_is_cut(
    moves: list[tuple[int, int, int, str]], cuts: list[int]
) -> None:
    """I1 holds after every batch of any cut, and a cut log projects the rows of a whole one."""
    events, balances = _fee_log(moves)
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
    assert cut_rows.notifications == whole_rows.notifications
    assert cut_rows.in_flight == whole_rows.in_flight == {}
    assert {k: v.available_points for k, v in whole_rows.accounts.items()} == balances
