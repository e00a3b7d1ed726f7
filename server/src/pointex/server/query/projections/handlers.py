"""One projection per event type: what an event does to accounts, history, notifications, rules.

Every handler takes the batch's working state, the feed event and its payload. Events this
module does not name are passed over (the checkpoint still moves past them), except on an
account stream, where every event changes the account (`batch.UnknownAccountEvent`). Market
and trade streams are projected in `orders` and `trades`; program expiry in `expiry`;
cooling-off refunds (their trade and account events) in `refunds`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pointex.server import limits
from pointex.server.domain import streams
from pointex.server.query.projections import expiry, fees, notifications, orders, refunds, trades
from pointex.server.query.projections.state import (
    BatchState,
    Move,
    apply_move,
    at_us,
    next_version,
    notify_moved,
    position_of,
    transfer_kind,
)
from pointex.server.query.readstore.port import (
    AccountRow,
    InFlightRow,
    PendingIssueRow,
    ProgramRulesRow,
)
from pointex.v1 import common_pb2, events_pb2

Handler = Callable[[BatchState, events_pb2.Event, Any], None]


# --- Account lifecycle ------------------------------------------------------------------------


def _opened(batch: BatchState, event: events_pb2.Event, p: events_pb2.AccountOpened) -> None:
    assert p.account_id not in batch.accounts, p.account_id
    assert event.stream_version == 1, event.stream_version
    batch.put(
        AccountRow(
            account_id=p.account_id,
            kind=common_pb2.AccountKind.Name(p.kind).removeprefix("ACCOUNT_KIND_"),
            status="OPEN",
            owner_partner_id=p.owner_partner_id,
            display_name=p.display_name,
            available_points=0,
            held_points=0,
            version=1,
            frozen_by_role="",
            opened_at_us=at_us(event),
            updated_at_us=at_us(event),
            tier="",
            pending_points=0,
        )
    )


def _status(
    batch: BatchState,
    event: events_pb2.Event,
    account_id: str,
    *,
    status: str,
    reason: str,
    role: str,
) -> None:
    old = batch.account(account_id)
    new = dataclasses.replace(
        old,
        status=status,
        frozen_by_role=role if status == "FROZEN" else "",
        version=next_version(event, old),
        updated_at_us=at_us(event),
    )
    batch.put(new)
    position = position_of(event)
    kind = {"FROZEN": "ACCOUNT_FROZEN", "OPEN": "ACCOUNT_UNFROZEN", "CLOSED": "ACCOUNT_CLOSED"}
    batch.notify(
        notifications.account_status(
            kind[status],
            account=new,
            position=position,
            index=batch.next_index(position),
            at_us=at_us(event),
            reason=reason,
            role=role,
        )
    )


def _frozen(batch: BatchState, event: events_pb2.Event, p: events_pb2.AccountFrozen) -> None:
    role = common_pb2.Role.Name(p.frozen_by_role).removeprefix("ROLE_")
    _status(batch, event, p.account_id, status="FROZEN", reason=p.reason, role=role)


def _unfrozen(batch: BatchState, event: events_pb2.Event, p: events_pb2.AccountUnfrozen) -> None:
    _status(batch, event, p.account_id, status="OPEN", reason=p.reason, role="")


def _closed(batch: BatchState, event: events_pb2.Event, p: events_pb2.AccountClosed) -> None:
    assert batch.account(p.account_id).available_points == 0, p.account_id
    assert batch.account(p.account_id).held_points == 0, p.account_id
    assert batch.account(p.account_id).pending_points == 0, p.account_id
    _status(batch, event, p.account_id, status="CLOSED", reason=p.reason, role="")


def _tier_set(batch: BatchState, event: events_pb2.Event, p: events_pb2.AccountTierSet) -> None:
    """Set or clear the account's tier; like any account event, it bumps the version."""
    old = batch.account(p.account_id)
    batch.put(
        dataclasses.replace(
            old, tier=p.tier, version=next_version(event, old), updated_at_us=at_us(event)
        )
    )


# --- Supply: mint and burn --------------------------------------------------------------------


def _minted(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsMinted) -> None:
    move = Move("MINT", p.amount_points, available_after=p.available_points, memo=p.memo)
    account = apply_move(batch, event, p.account_id, move)
    batch.minted_points += p.amount_points
    notify_moved(batch, "POINTS_MINTED", account, move)


def _burned(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsBurned) -> None:
    move = Move("BURN", -p.amount_points, available_after=p.available_points, memo=p.memo)
    account = apply_move(batch, event, p.account_id, move)
    batch.burned_points += p.amount_points
    notify_moved(batch, "POINTS_BURNED", account, move)


# --- Transfers: debit, then credit or return --------------------------------------------------

# The transfer kinds that take points back, the only ones the debt policy covers.
_REVERSALS = (common_pb2.TRANSFER_KIND_REVERSE_ISSUE, common_pb2.TRANSFER_KIND_REVERSE_REDEEM)


def _debited(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsDebited) -> None:
    from_pending = bool(p.pending_transfer_id)
    if from_pending:
        _take_back_pending(batch, p)
    if p.debt_floor_points != 0:
        _check_debt(p)
    # A fee is a step of a member's TransferPoints, debited with its points, never alone.
    assert p.kind != fees.FEE_KIND, p
    assert p.fee_points >= 0, p
    if p.fee_points:
        assert p.kind == common_pb2.TRANSFER_KIND_TRANSFER, p
        assert not from_pending, p
    move = Move(
        transfer_kind(p.kind) + "_OUT",
        0 if from_pending else -(p.amount_points + p.fee_points),
        # The event states the available points after the debit, unchanged when it took
        # pending points back; the pending points after it are computed only.
        available_after=p.available_points,
        counterparty_account_id=p.counterparty_account_id,
        transfer_id=p.transfer_id,
        memo=p.memo,
        pending_delta=-p.amount_points if from_pending else 0,
        debt_floor_points=p.debt_floor_points,
        fee_points=p.fee_points,
    )
    account = apply_move(batch, event, p.account_id, move)
    position = batch.position
    batch.add_in_flight(
        InFlightRow(streams.transfer(p.transfer_id), p.account_id, p.amount_points, position)
    )
    if p.fee_points:
        key = fees.fee_in_flight(p.transfer_id)
        batch.add_in_flight(InFlightRow(key, p.account_id, p.fee_points, position))
    notify_moved(batch, "POINTS_SENT", account, move)


def _take_back_pending(batch: BatchState, p: events_pb2.PointsDebited) -> None:
    """Take a reversal's points from what is left pending of the issue it reverses."""
    assert p.kind == common_pb2.TRANSFER_KIND_REVERSE_ISSUE, p
    issue = batch.pending_issue(p.pending_transfer_id)
    assert issue.account_id == p.account_id, (issue, p.account_id)
    # A reversal takes back at most what is left of the issue's pending points.
    assert p.amount_points <= issue.amount_points, (issue, p.amount_points)
    batch.put_pending_issue(
        dataclasses.replace(issue, amount_points=issue.amount_points - p.amount_points)
    )


def _check_debt(p: events_pb2.PointsDebited) -> None:
    """Check a debit that states a debt floor: a reversal under the program's debt policy."""
    assert p.kind in _REVERSALS, p
    # It took available points, and took the account below zero within what the policy
    # allows (apply_move checks the balance against the floor).
    assert not p.pending_transfer_id, p
    assert p.debt_floor_points < 0, p
    assert p.debt_floor_points >= -limits.points_amount_max, p
    assert p.available_points < 0, p


def _credited(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsCredited) -> None:
    move = Move(
        transfer_kind(p.kind) + "_IN",
        p.amount_points,
        available_after=p.available_points,
        counterparty_account_id=p.counterparty_account_id,
        transfer_id=p.transfer_id,
        memo=p.memo,
    )
    account = apply_move(batch, event, p.account_id, move)
    if p.kind == fees.FEE_KIND:
        fees.settle_fee_credited(batch, p)
    else:
        batch.remove_in_flight(streams.transfer(p.transfer_id))
    # The fee account's owner hears of each fee too (a FEE_IN), like any credit.
    notify_moved(batch, "POINTS_RECEIVED", account, move)


def _pending(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsPending) -> None:
    """The destination side of an issue that activates later: it completes the transfer.

    No notification: the member is told when the points become spendable (an activation).
    """
    assert p.transfer_id not in batch.pending_issues, p.transfer_id
    move = Move(
        "ISSUE_PENDING",
        0,
        counterparty_account_id=p.counterparty_account_id,
        transfer_id=p.transfer_id,
        memo=p.memo,
        pending_delta=p.amount_points,
        pending_after=p.pending_points,
    )
    apply_move(batch, event, p.account_id, move)
    batch.remove_in_flight(streams.transfer(p.transfer_id))
    batch.put_pending_issue(
        PendingIssueRow(
            transfer_id=p.transfer_id,
            account_id=p.account_id,
            counterparty_account_id=p.counterparty_account_id,
            amount_points=p.amount_points,
            memo=p.memo,
            position=position_of(event),
        )
    )


def _activated(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsActivated) -> None:
    """Pending points of an issue become available; the member hears it from the merchant."""
    issue = batch.pending_issue(p.transfer_id)
    assert issue.account_id == p.account_id, (issue, p.account_id)
    # All that is left of the issue activates at once.
    assert p.amount_points == issue.amount_points, (issue, p.amount_points)
    move = Move(
        "POINTS_ACTIVATED",
        p.amount_points,
        available_after=p.available_points,
        counterparty_account_id=issue.counterparty_account_id,
        transfer_id=p.transfer_id,
        memo=issue.memo,
        pending_delta=-p.amount_points,
        pending_after=p.pending_points,
    )
    account = apply_move(batch, event, p.account_id, move)
    batch.put_pending_issue(dataclasses.replace(issue, amount_points=0))
    notify_moved(batch, "POINTS_RECEIVED", account, move)


def _returned(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsReturned) -> None:
    """Points (with their fee) a destination refused, or a fee the fee account refused."""
    move = Move(
        "FEE_RETURNED" if p.kind == fees.FEE_KIND else "TRANSFER_RETURNED",
        p.amount_points,
        available_after=p.available_points,
        counterparty_account_id=p.counterparty_account_id,
        transfer_id=p.transfer_id,
    )
    account = apply_move(batch, event, p.account_id, move)
    fees.settle_returned(batch, p)
    notify_moved(batch, "POINTS_RETURNED", account, move)


# --- Market steps on accounts: escrow and settlement -----------------------------------------


def _held(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsHeld) -> None:
    move = Move(
        "ESCROW_HOLD",
        -p.amount_points,
        p.amount_points,
        available_after=p.available_points,
        held_after=p.held_points,
        order_id=p.order_id,
    )
    apply_move(batch, event, p.account_id, move)
    orders.held(batch, event, p)


def _buy_reserved(batch: BatchState, event: events_pb2.Event, p: events_pb2.BuyReserved) -> None:
    _touched(batch, event, p.account_id)
    orders.buy_reserved(batch, event, p)


def _buy_released(batch: BatchState, event: events_pb2.Event, p: events_pb2.BuyReleased) -> None:
    _touched(batch, event, p.account_id)


def _touched(batch: BatchState, event: events_pb2.Event, account_id: str) -> None:
    """Count an account event that moves no points (its version still follows)."""
    old = batch.account(account_id)
    batch.put(
        dataclasses.replace(old, version=next_version(event, old), updated_at_us=at_us(event))
    )


def _released(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsReleased) -> None:
    move = Move(
        "ESCROW_RELEASE",
        p.amount_points,
        -p.amount_points,
        available_after=p.available_points,
        held_after=p.held_points,
        order_id=p.order_id,
        trade_id=p.trade_id,
    )
    apply_move(batch, event, p.account_id, move)
    orders.released(batch, event, p)


def _sold(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsSold) -> None:
    move = Move(
        "TRADE_SOLD",
        0,
        -p.amount_points,
        held_after=p.held_points,
        order_id=p.order_id,
        trade_id=p.trade_id,
    )
    apply_move(batch, event, p.account_id, move)
    batch.add_in_flight(
        InFlightRow(streams.trade(p.trade_id), p.account_id, p.amount_points, position_of(event))
    )
    orders.sold(batch, event, p)


def _bought(batch: BatchState, event: events_pb2.Event, p: events_pb2.PointsBought) -> None:
    move = Move(
        "TRADE_BOUGHT",
        p.amount_points,
        available_after=p.available_points,
        order_id=p.order_id,
        trade_id=p.trade_id,
    )
    apply_move(batch, event, p.account_id, move)
    batch.remove_in_flight(streams.trade(p.trade_id))


# --- The program's rules ----------------------------------------------------------------------


def _program_rules_set(
    batch: BatchState, event: events_pb2.Event, p: events_pb2.ProgramRulesSet
) -> None:
    """Replace the rules in force; the event's version on program-main is the rules' version."""
    assert event.stream_id == streams.program(), event.stream_id
    previous = 0 if batch.program_rules is None else batch.program_rules.version
    # Every change reaches the projection, in stream order: a skipped one is a bug upstream.
    assert event.stream_version == previous + 1, (event.stream_version, previous)
    version = int(event.stream_version)
    batch.program_rules = ProgramRulesRow(
        version=version,
        # Deterministic, so that a rebuild stores the same bytes and compares equal.
        body=p.rules.SerializeToString(deterministic=True),
        set_at_us=at_us(event),
        position=position_of(event),
        fee_schedule_version=fees.fee_schedule_version(batch.program_rules, version, p.rules),
    )
    batch.program_rules_changed = True


# Payload field of Event -> its projection. Every other payload is passed over (not on an
# account stream: see batch.UnknownAccountEvent).
HANDLERS: dict[str, Handler] = {
    "account_opened": _opened,
    "account_frozen": _frozen,
    "account_unfrozen": _unfrozen,
    "account_closed": _closed,
    "account_tier_set": _tier_set,
    "points_minted": _minted,
    "points_burned": _burned,
    "points_debited": _debited,
    "points_credited": _credited,
    "points_returned": _returned,
    "points_pending": _pending,
    "points_activated": _activated,
    "points_expired": expiry.expired,
    "points_expiring_soon": expiry.expiring_soon,
    "points_held": _held,
    "buy_reserved": _buy_reserved,
    "buy_released": _buy_released,
    "points_released": _released,
    "points_sold": _sold,
    "points_bought": _bought,
    "bought_points_returned": refunds.bought_returned,
    "sold_points_returned": refunds.sold_returned,
    "bought_points_restored": refunds.bought_restored,
    "market_configured": orders.market_configured,
    "order_placed": orders.placed,
    "order_rejected": orders.rejected,
    "trade_matched": orders.matched,
    "order_cancelled": orders.cancelled,
    "order_quantity_returned": orders.quantity_returned,
    "trade_created": trades.created,
    "payment_requested": trades.payment_requested,
    "payment_confirmed": trades.payment_confirmed,
    "payment_failed": trades.payment_failed,
    "trade_settled": trades.settled,
    "trade_cancelled": trades.cancelled,
    "refund_required": trades.refund_required,
    "refund_requested": refunds.requested,
    "trade_refunded": refunds.refunded,
    "refund_declined": refunds.declined,
    "program_rules_set": _program_rules_set,
}
