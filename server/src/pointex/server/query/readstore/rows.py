"""Rows as statement parameters, in the column order both adapters' statements use."""

from __future__ import annotations

from typing import Any

from pointex.server.query.readstore.port import (
    AccountRow,
    InFlightRow,
    MovementRow,
    NotificationRow,
    PendingIssueRow,
    ProgramRulesRow,
)

# Above every position: where a newest-first listing starts.
POSITION_END = 2**63 - 1

# The columns of the program's rules, in the order both adapters' statements use (the table's
# one row also has `id`, always 1).
PROGRAM_RULES_COLUMNS = "version, body, set_at_us, position, fee_schedule_version"

# The columns of points in flight, in the order both adapters' statements use.
IN_FLIGHT_COLUMNS = "process_id, account_id, amount_points, position"

# The columns of a pending issue, in the order both adapters' statements use.
PENDING_ISSUE_COLUMNS = (
    "transfer_id, account_id, counterparty_account_id, amount_points, memo, position"
)


def account_values(row: AccountRow) -> tuple[Any, ...]:
    """Return an account's columns in `ACCOUNT_COLUMNS` order."""
    return (
        row.account_id,
        row.kind,
        row.status,
        row.owner_partner_id,
        row.display_name,
        row.available_points,
        row.held_points,
        row.version,
        row.frozen_by_role,
        row.opened_at_us,
        row.updated_at_us,
        row.tier,
        row.pending_points,
        row.debt_floor_points,
    )


def movement_values(row: MovementRow) -> tuple[Any, ...]:
    """Return a movement's columns in `MOVEMENT_COLUMNS` order."""
    return (
        row.account_id,
        row.position,
        row.recorded_at_us,
        row.account_version,
        row.kind,
        row.available_delta_points,
        row.held_delta_points,
        row.available_points,
        row.held_points,
        row.counterparty_account_id,
        row.transfer_id,
        row.order_id,
        row.trade_id,
        row.memo,
        row.pending_delta_points,
        row.pending_points,
        row.fee_points,
    )


def notification_values(row: NotificationRow) -> tuple[Any, ...]:
    """Return a notification's columns in `NOTIFICATION_COLUMNS` order."""
    return (
        row.position,
        row.index,
        row.account_id,
        row.owner_partner_id,
        row.kind,
        row.occurred_at_us,
        row.body,
    )


def in_flight_values(row: InFlightRow) -> tuple[Any, ...]:
    """Return an in-flight row's columns in `IN_FLIGHT_COLUMNS` order."""
    return (row.process_id, row.account_id, row.amount_points, row.position)


def in_flight_row(values: Any) -> InFlightRow:
    """Build points in flight from a row of `IN_FLIGHT_COLUMNS`."""
    return InFlightRow(
        process_id=str(values[0]),
        account_id=str(values[1]),
        amount_points=int(values[2]),
        position=int(values[3]),
    )


def pending_issue_values(row: PendingIssueRow) -> tuple[Any, ...]:
    """Return a pending issue's columns in `PENDING_ISSUE_COLUMNS` order."""
    return (
        row.transfer_id,
        row.account_id,
        row.counterparty_account_id,
        row.amount_points,
        row.memo,
        row.position,
    )


def pending_issue_row(values: Any) -> PendingIssueRow:
    """Build a pending issue from a row of `PENDING_ISSUE_COLUMNS`."""
    return PendingIssueRow(
        transfer_id=str(values[0]),
        account_id=str(values[1]),
        counterparty_account_id=str(values[2]),
        amount_points=int(values[3]),
        memo=str(values[4]),
        position=int(values[5]),
    )


def program_rules_values(row: ProgramRulesRow) -> tuple[Any, ...]:
    """Return the rules' columns in `PROGRAM_RULES_COLUMNS` order."""
    return (row.version, row.body, row.set_at_us, row.position, row.fee_schedule_version)


def program_rules_row(values: Any) -> ProgramRulesRow:
    """Build the rules from a row of `PROGRAM_RULES_COLUMNS`."""
    return ProgramRulesRow(
        version=int(values[0]),
        body=bytes(values[1]),
        set_at_us=int(values[2]),
        position=int(values[3]),
        fee_schedule_version=int(values[4]),
    )


def notification_row(values: Any) -> NotificationRow:
    """Build a notification from a row of `NOTIFICATION_COLUMNS`."""
    return NotificationRow(
        position=int(values[0]),
        index=int(values[1]),
        account_id=str(values[2]),
        owner_partner_id=str(values[3]),
        kind=str(values[4]),
        occurred_at_us=int(values[5]),
        body=bytes(values[6]),
    )
