"""Build notification rows: who is told, of what, with which typed details.

Each notification goes to the partner owning the account concerned (and to operators). Its
body is a serialized `pointex.v1.Notification` without the cursor, which is added per
caller when it is sent; `(position, index)` orders notifications and is the same in every
rebuild, so cursors stay valid.
"""

from __future__ import annotations

from typing import Final

from pointex.client.positions import encode_global
from pointex.server.query.readstore.port import AccountRow, NotificationRow
from pointex.v1 import common_pb2, query_service_pb2

_PREFIX = "NOTIFICATION_KIND_"
# Looked up for every notification: the kinds' numbers by name (without the prefix) and back.
_KIND_NUMBERS: Final = {
    name.removeprefix(_PREFIX): number
    for name, number in query_service_pb2.NotificationKind.items()
}
_KIND_NAMES: Final = {number: name for name, number in _KIND_NUMBERS.items()}
_US_PER_S: Final = 1_000_000
_NS_PER_US: Final = 1_000


def _header(
    kind: str, account_id: str, position: int, at_us: int
) -> query_service_pb2.Notification:
    """Return a notification with its kind, account, time and position, details to be set.

    Filled in place: building submessages and copying them in costs twice as much, once per
    movement projected.
    """
    notification = query_service_pb2.Notification(kind=_KIND_NUMBERS[kind], account_id=account_id)
    seconds, micros = divmod(at_us, _US_PER_S)
    notification.occurred_at.seconds = seconds
    notification.occurred_at.nanos = micros * _NS_PER_US
    notification.position.token = encode_global(position)
    return notification


def _row(
    notification: query_service_pb2.Notification,
    *,
    account: AccountRow,
    position: int,
    index: int,
    at_us: int,
) -> NotificationRow:
    return NotificationRow(
        position=position,
        index=index,
        account_id=account.account_id,
        owner_partner_id=account.owner_partner_id,
        kind=_KIND_NAMES[notification.kind],
        occurred_at_us=at_us,
        body=notification.SerializeToString(),
    )


def points_moved(
    kind: str,
    *,
    account: AccountRow,
    position: int,
    index: int,
    at_us: int,
    movement_kind: common_pb2.MovementKind.ValueType,
    amount_points: int,
    counterparty_account_id: str,
    transfer_id: str,
    memo: str,
) -> NotificationRow:
    """Return a POINTS_* notification for `account` (after the movement).

    Its `PointsMovedDetails` are the arguments from `movement_kind` on, and the account's
    available points.
    """
    notification = _header(kind, account.account_id, position, at_us)
    details = notification.points_moved
    details.movement_kind = movement_kind
    details.amount_points = amount_points
    details.counterparty_account_id = counterparty_account_id
    details.transfer_id = transfer_id
    details.memo = memo
    details.available_points = account.available_points
    return _row(notification, account=account, position=position, index=index, at_us=at_us)


def points_expiring_soon(
    *,
    account: AccountRow,
    position: int,
    index: int,
    at_us: int,
    details: query_service_pb2.PointsExpiringSoonDetails,
) -> NotificationRow:
    """Return a POINTS_EXPIRING_SOON notification for `account`: points lapse soon."""
    notification = _header("POINTS_EXPIRING_SOON", account.account_id, position, at_us)
    notification.points_expiring_soon.CopyFrom(details)
    return _row(notification, account=account, position=position, index=index, at_us=at_us)


def account_status(
    kind: str,
    *,
    account: AccountRow,
    position: int,
    index: int,
    at_us: int,
    reason: str,
    role: str,
) -> NotificationRow:
    """Return an ACCOUNT_* notification for `account` (after the status change)."""
    notification = _header(kind, account.account_id, position, at_us)
    notification.account_status.CopyFrom(
        query_service_pb2.AccountStatusDetails(
            status=common_pb2.AccountStatus.Value("ACCOUNT_STATUS_" + account.status),
            reason=reason,
            changed_by_role=common_pb2.Role.Value("ROLE_" + role)
            if role
            else common_pb2.ROLE_UNSPECIFIED,
        ),
    )
    return _row(notification, account=account, position=position, index=index, at_us=at_us)


def market(
    kind: str,
    *,
    account_id: str,
    owner_partner_id: str,
    position: int,
    index: int,
    at_us: int,
    order: common_pb2.Order | None = None,
    trade: common_pb2.Trade | None = None,
    payment_required: query_service_pb2.PaymentRequiredDetails | None = None,
    trade_refund: query_service_pb2.TradeRefundDetails | None = None,
) -> NotificationRow:
    """Return an ORDER_*, TRADE_*, PAYMENT_REQUIRED or REFUND_* notification."""
    notification = _header(kind, account_id, position, at_us)
    if order is not None:
        notification.order.CopyFrom(order)
    if trade is not None:
        notification.trade.CopyFrom(trade)
    if payment_required is not None:
        notification.payment_required.CopyFrom(payment_required)
    if trade_refund is not None:
        notification.trade_refund.CopyFrom(trade_refund)
    assert notification.WhichOneof("details") is not None, kind
    return NotificationRow(
        position=position,
        index=index,
        account_id=account_id,
        owner_partner_id=owner_partner_id,
        kind=kind,
        occurred_at_us=at_us,
        body=notification.SerializeToString(),
    )
