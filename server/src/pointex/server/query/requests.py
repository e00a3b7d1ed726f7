"""Query requests -> validated filters; who may see what.

Every field is checked before any waiting or reading, and a malformed one raises
`InvalidRequest` naming the field. Tenancy is checked here too: a partner names only its own
accounts and owner id (PERMISSION_DENIED / NOT_OWNER otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from google.protobuf import timestamp_pb2

from pointex.client.positions import decode_global
from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.values import Principal, Role
from pointex.server.grpc_edge import convert
from pointex.server.grpc_edge.status import InvalidRequest
from pointex.server.query.readstore.port import (
    AccountFilter,
    AccountRow,
    HistoryFilter,
    NotificationFilter,
)
from pointex.v1 import common_pb2, query_service_pb2

PAGE_SIZE_TOO_LARGE: Final = "PAGE_SIZE_TOO_LARGE"


def min_position(message: common_pb2.Position) -> int:
    """Return the position a request's `min_position` names (0 when unset)."""
    if len(message.token) > limits.position_token_bytes_max:
        raise InvalidRequest("POSITION_INVALID", "min_position", "a position token is too long")
    return decode_global(message.token)


def page_size(value: int, field: str = "page_size") -> int:
    """Return the page size a request asks for: 0 is the default, above the maximum refused."""
    if value < 0:
        raise InvalidRequest(errors.INVALID_FIELD, field, "must not be negative")
    if value > limits.read_page_items_max:
        raise InvalidRequest(PAGE_SIZE_TOO_LARGE, field, f"at most {limits.read_page_items_max}")
    return value or limits.read_page_items_default


def enum_names(
    field: str, values: Sequence[int], enum: object, prefix: str, count_max: int
) -> tuple[str, ...]:
    """Return the names (without `prefix`) of a repeated enum field, sorted, no UNSPECIFIED."""
    if len(values) > count_max:
        raise InvalidRequest(errors.FIELD_TOO_LONG, field, f"at most {count_max} entries")
    names: list[str] = []
    for value in values:
        try:
            name: str = enum.Name(value)  # type: ignore[attr-defined]
        except ValueError:
            raise InvalidRequest(errors.INVALID_FIELD, field, "unknown value") from None
        if name.endswith("_UNSPECIFIED"):
            raise InvalidRequest(errors.INVALID_FIELD, field, "UNSPECIFIED is not a value")
        names.append(name.removeprefix(prefix))
    # Sorted and without repeats, so that equal filters bind page tokens equally.
    return tuple(sorted(set(names)))


def require_visible(
    caller: Principal, account: AccountRow | None, account_id: str, field: str = "account_id"
) -> AccountRow:
    """Return the account if it exists and the caller may see it (`field` names it)."""
    if account is None:
        raise errors.NotFound(errors.ACCOUNT_NOT_FOUND, "no such account", account_id=account_id)
    if not caller.caller.may_act_for(account.owner_partner_id):
        raise errors.PermissionDenied(
            errors.NOT_OWNER, "the account belongs to another partner", field=field
        )
    return account


def account_filter(
    caller: Principal, request: query_service_pb2.ListAccountsRequest
) -> AccountFilter:
    """Return the filter of a ListAccounts request; a partner lists only its own accounts."""
    owner = request.owner_partner_id
    if owner:
        convert.identifier("owner_partner_id", owner)
    if caller.role is Role.PARTNER:
        if owner and owner != caller.principal_id:
            raise errors.PermissionDenied(
                errors.NOT_OWNER, "a partner lists only its own accounts", field="owner_partner_id"
            )
        owner = caller.principal_id
    return AccountFilter(
        owner_partner_id=owner,
        kinds=enum_names(
            "kinds",
            request.kinds,
            common_pb2.AccountKind,
            "ACCOUNT_KIND_",
            limits.account_filter_kinds_max,
        ),
        statuses=enum_names(
            "statuses",
            request.statuses,
            common_pb2.AccountStatus,
            "ACCOUNT_STATUS_",
            limits.account_filter_statuses_max,
        ),
    )


def _time_us(stamp: timestamp_pb2.Timestamp, field: str) -> int:
    if not 0 <= stamp.nanos < 1_000_000_000:  # noqa: PLR2004 - nanoseconds per second.
        raise InvalidRequest(errors.INVALID_FIELD, field, "nanos must be 0..999999999")
    return int(stamp.seconds) * 1_000_000 + stamp.nanos // 1_000


def history_filter(request: query_service_pb2.GetAccountHistoryRequest) -> HistoryFilter:
    """Return the filter of a GetAccountHistory request."""
    start_us = (
        _time_us(request.start_time, "start_time") if request.HasField("start_time") else None
    )
    end_us = _time_us(request.end_time, "end_time") if request.HasField("end_time") else None
    if start_us is not None and end_us is not None and end_us <= start_us:
        raise InvalidRequest(errors.INVALID_FIELD, "end_time", "must be after start_time")
    return HistoryFilter(
        kinds=enum_names(
            "kinds",
            request.kinds,
            common_pb2.MovementKind,
            "MOVEMENT_KIND_",
            limits.history_filter_kinds_max,
        ),
        start_us=start_us,
        end_us=end_us,
        newest_first=request.newest_first,
    )


def notification_filter(
    caller: Principal, request: query_service_pb2.WatchNotificationsRequest
) -> NotificationFilter:
    """Return the filter of a WatchNotifications request (accounts are checked separately)."""
    accounts_max = limits.notification_filter_accounts_max
    if len(request.account_ids) > accounts_max:
        raise InvalidRequest(
            errors.FIELD_TOO_LONG, "account_ids", f"at most {accounts_max} entries"
        )
    account_ids = tuple(
        sorted({convert.identifier("account_ids", account) for account in request.account_ids})
    )
    kinds = enum_names(
        "kinds",
        request.kinds,
        query_service_pb2.NotificationKind,
        "NOTIFICATION_KIND_",
        limits.notification_filter_kinds_max,
    )
    if request.cursor and request.from_beginning:
        raise InvalidRequest(
            errors.INVALID_FIELD, "from_beginning", "cursor and from_beginning exclude each other"
        )
    owner = caller.principal_id if caller.role is Role.PARTNER else None
    return NotificationFilter(owner_partner_id=owner, account_ids=account_ids, kinds=kinds)
