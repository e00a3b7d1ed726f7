"""Build notification rows: who is told, of what, with which typed details.

Each notification goes to the partner owning the account concerned (and to operators). Its
body is a serialized `pointex.v1.Notification` without the cursor, which is added per
caller when it is sent; `(position, index)` orders notifications and is the same in every
rebuild, so cursors stay valid.
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from pointex.client.positions import position_message
from pointex.server.query.readstore.port import AccountRow, NotificationRow
from pointex.v1 import common_pb2, query_service_pb2

_PREFIX = "NOTIFICATION_KIND_"


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


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
        kind=query_service_pb2.NotificationKind.Name(notification.kind).removeprefix(_PREFIX),
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
    details: query_service_pb2.PointsMovedDetails,
) -> NotificationRow:
    """Return a POINTS_* notification for `account` (after the movement)."""
    notification = query_service_pb2.Notification(
        kind=query_service_pb2.NotificationKind.Value(_PREFIX + kind),
        account_id=account.account_id,
        occurred_at=_timestamp(at_us),
        position=position_message(position),
        points_moved=details,
    )
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
    notification = query_service_pb2.Notification(
        kind=query_service_pb2.NOTIFICATION_KIND_POINTS_EXPIRING_SOON,
        account_id=account.account_id,
        occurred_at=_timestamp(at_us),
        position=position_message(position),
        points_expiring_soon=details,
    )
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
    notification = query_service_pb2.Notification(
        kind=query_service_pb2.NotificationKind.Value(_PREFIX + kind),
        account_id=account.account_id,
        occurred_at=_timestamp(at_us),
        position=position_message(position),
        account_status=query_service_pb2.AccountStatusDetails(
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
    notification = query_service_pb2.Notification(
        kind=query_service_pb2.NotificationKind.Value(_PREFIX + kind),
        account_id=account_id,
        occurred_at=_timestamp(at_us),
        position=position_message(position),
    )
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
