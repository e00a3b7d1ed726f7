"""Read-store rows -> proto messages of the query contract."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from pointex.client.positions import position_message
from pointex.server.domain import program
from pointex.server.query.projections import fees
from pointex.server.query.readstore.port import (
    AccountRow,
    MovementRow,
    NotificationRow,
    ProgramRulesRow,
)
from pointex.v1 import common_pb2, query_service_pb2


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    """Return a Timestamp of microseconds since the Unix epoch."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def account_message(row: AccountRow) -> common_pb2.Account:
    """Return the proto Account of an account row."""
    return common_pb2.Account(
        account_id=row.account_id,
        kind=common_pb2.AccountKind.Value("ACCOUNT_KIND_" + row.kind),
        status=common_pb2.AccountStatus.Value("ACCOUNT_STATUS_" + row.status),
        owner_partner_id=row.owner_partner_id,
        display_name=row.display_name,
        available_points=row.available_points,
        held_points=row.held_points,
        version=row.version,
        frozen_by_role=common_pb2.Role.Value("ROLE_" + row.frozen_by_role)
        if row.frozen_by_role
        else common_pb2.ROLE_UNSPECIFIED,
        opened_at=timestamp(row.opened_at_us),
        updated_at=timestamp(row.updated_at_us),
        tier=row.tier,
        pending_points=row.pending_points,
    )


def movement_message(row: MovementRow) -> query_service_pb2.Movement:
    """Return the proto Movement of a movement row."""
    return query_service_pb2.Movement(
        position=position_message(row.position),
        recorded_at=timestamp(row.recorded_at_us),
        account_id=row.account_id,
        account_version=row.account_version,
        kind=common_pb2.MovementKind.Value("MOVEMENT_KIND_" + row.kind),
        available_delta_points=row.available_delta_points,
        held_delta_points=row.held_delta_points,
        available_points=row.available_points,
        held_points=row.held_points,
        counterparty_account_id=row.counterparty_account_id,
        transfer_id=row.transfer_id,
        order_id=row.order_id,
        trade_id=row.trade_id,
        memo=row.memo,
        pending_delta_points=row.pending_delta_points,
        pending_points=row.pending_points,
        fee_points=row.fee_points,
    )


def notification_message(row: NotificationRow, cursor: bytes) -> query_service_pb2.Notification:
    """Return the stored notification with the caller's cursor."""
    notification = query_service_pb2.Notification.FromString(row.body)
    notification.cursor = cursor
    return notification


def program_rules_reply(
    as_of: int, row: ProgramRulesRow | None
) -> query_service_pb2.GetProgramRulesResponse:
    """Return GetProgramRules' answer: the rules in force, or version 0 and no limits."""
    reply = query_service_pb2.GetProgramRulesResponse(
        as_of=position_message(as_of), rules=common_pb2.ProgramRules()
    )
    if row is not None:
        reply.version = row.version
        reply.rules.ParseFromString(row.body)
        # The log keeps every part of the rules; one at its zero was left unset by the operator.
        _unset_empty(reply.rules)
        reply.set_at.CopyFrom(timestamp(row.set_at_us))
        reply.fee_schedule_version = row.fee_schedule_version
    return reply


def _unset_empty(message: Message) -> None:
    """Clear every sub-message (at any depth) that holds nothing but zeros."""
    for field, value in message.ListFields():
        if not isinstance(value, Message):  # A scalar, or a repeated field.
            continue
        _unset_empty(value)
        if not value.ByteSize():
            message.ClearField(field.name)


def transfer_quote_reply(
    as_of: int, row: ProgramRulesRow | None, from_account_id: str, amount_points: int
) -> query_service_pb2.QuoteTransferResponse:
    """Return QuoteTransfer's answer: the fee under the schedule in force, and the total."""
    in_force = fees.program_of(row)
    quoted = program.quote(in_force, from_account_id, amount_points)
    return query_service_pb2.QuoteTransferResponse(
        as_of=position_message(as_of),
        quote=common_pb2.FeeQuote(
            fee_points=quoted.fee_points, schedule_version=quoted.schedule_version
        ),
        # The account is named only when it is paid: no fee, no account to send one to.
        fee_account_id=in_force.rules.transfer_fee.fee_account_id if quoted.fee_points else "",
        total_points=amount_points + quoted.fee_points,
    )
