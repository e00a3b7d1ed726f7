"""Proto requests -> validated values for the domain; domain values -> proto fields.

Every field of a request is checked here before any work is done, and a malformed one
raises `InvalidRequest` naming the field (INVALID_ARGUMENT with BadRequest details).
"""

from __future__ import annotations

import re
import time
from typing import Final

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.events import NEVER
from pointex.server.domain.lots import ExpiryPolicy
from pointex.server.domain.program import (
    FeeQuote,
    LimitedOperation,
    ProgramRules,
    TransactionLimit,
    TransferFee,
    validate,
)
from pointex.server.domain.values import (
    AccountKind,
    Instant,
    OrderFeeQuote,
    OrderSide,
    Span,
    TimeInForce,
)
from pointex.server.grpc_edge.status import InvalidRequest
from pointex.v1 import common_pb2

_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.id_chars_max}}}")
_REQUEST_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.request_id_chars_max}}}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def request_id(value: str) -> str:
    """Return a valid request id (1 to request_id_chars_max id characters)."""
    if not value:
        raise InvalidRequest("REQUEST_ID_MISSING", "request_id", "request_id is required")
    if not _REQUEST_ID.fullmatch(value):
        too_long = len(value) > limits.request_id_chars_max
        reason = errors.FIELD_TOO_LONG if too_long else errors.INVALID_FIELD
        raise InvalidRequest(
            reason, "request_id", f"1-{limits.request_id_chars_max} of A-Z a-z 0-9 _ . : -"
        )
    return value


def identifier(field: str, value: str) -> str:
    """Return a valid id (1 to id_chars_max id characters) or raise naming `field`."""
    if not _ID.fullmatch(value):
        if len(value) > limits.id_chars_max:
            raise InvalidRequest(
                errors.FIELD_TOO_LONG, field, f"at most {limits.id_chars_max} characters"
            )
        raise InvalidRequest(
            errors.INVALID_FIELD, field, f"1-{limits.id_chars_max} of A-Z a-z 0-9 _ . : -"
        )
    return value


def text(field: str, value: str, bytes_max: int = limits.text_bytes_max) -> str:
    """Return free text of at most `bytes_max` UTF-8 bytes without control characters."""
    if len(value.encode()) > bytes_max:
        raise InvalidRequest(errors.FIELD_TOO_LONG, field, f"at most {bytes_max} bytes")
    if _CONTROL.search(value):
        raise InvalidRequest(errors.INVALID_FIELD, field, "no control characters")
    return value


def amount(field: str, value: int) -> int:
    """Return a positive amount of points within the per-command limit."""
    if value <= 0:
        raise InvalidRequest(errors.AMOUNT_NOT_POSITIVE, field, "must be positive")
    if value > limits.points_amount_max:
        raise InvalidRequest(errors.AMOUNT_TOO_LARGE, field, f"at most {limits.points_amount_max}")
    return value


_KINDS: Final = {
    common_pb2.ACCOUNT_KIND_MEMBER: AccountKind.MEMBER,
    common_pb2.ACCOUNT_KIND_MERCHANT: AccountKind.MERCHANT,
}


def account_kind(value: int) -> AccountKind:
    """Return the domain kind of a proto AccountKind (UNSPECIFIED is invalid)."""
    kind: AccountKind | None = _KINDS.get(value)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidRequest(errors.INVALID_FIELD, "kind", "MEMBER or MERCHANT")
    return kind


def account_kind_to_proto(kind: AccountKind) -> common_pb2.AccountKind.ValueType:
    """Return the proto AccountKind of a domain kind."""
    return common_pb2.AccountKind.Value(f"ACCOUNT_KIND_{kind.value}")


def account_status_to_proto(status: str) -> common_pb2.AccountStatus.ValueType:
    """Return the proto AccountStatus of a domain status name."""
    return common_pb2.AccountStatus.Value(f"ACCOUNT_STATUS_{status}")


_SIDES: Final = {
    common_pb2.ORDER_SIDE_BUY: OrderSide.BUY,
    common_pb2.ORDER_SIDE_SELL: OrderSide.SELL,
}
_TIME_IN_FORCE: Final = {
    common_pb2.TIME_IN_FORCE_GTC: TimeInForce.GTC,
    common_pb2.TIME_IN_FORCE_IOC: TimeInForce.IOC,
}


def order_side(value: int) -> OrderSide:
    """Return the domain side of a proto OrderSide (UNSPECIFIED is invalid)."""
    side: OrderSide | None = _SIDES.get(value)  # type: ignore[call-overload]
    if side is None:
        raise InvalidRequest(errors.INVALID_FIELD, "side", "BUY or SELL")
    return side


def time_in_force(value: int) -> TimeInForce:
    """Return the domain time in force of a proto TimeInForce (UNSPECIFIED is invalid)."""
    tif: TimeInForce | None = _TIME_IN_FORCE.get(value)  # type: ignore[call-overload]
    if tif is None:
        raise InvalidRequest(errors.INVALID_FIELD, "time_in_force", "GTC or IOC")
    return tif


def price(field: str, value: int) -> int:
    """Return a positive limit price (the market checks its own maximum)."""
    if value <= 0:
        raise InvalidRequest(errors.PRICE_NOT_POSITIVE, field, "must be positive")
    return value


def optional_identifier(field: str, value: str) -> str:
    """Return an id that may be empty (0-64 id characters)."""
    return identifier(field, value) if value else ""


def tier(field: str, value: str) -> str:
    """Return a member tier: empty (none) or 1 to tier_chars_max id characters."""
    return optional_identifier(field, value)


_OPERATIONS: Final = {
    common_pb2.LIMITED_OPERATION_TRANSFER: LimitedOperation.TRANSFER,
    common_pb2.LIMITED_OPERATION_REDEEM: LimitedOperation.REDEEM,
    common_pb2.LIMITED_OPERATION_MARKET_BUY: LimitedOperation.MARKET_BUY,
    common_pb2.LIMITED_OPERATION_MARKET_SELL: LimitedOperation.MARKET_SELL,
}


def program_rules(message: common_pb2.ProgramRules) -> ProgramRules:
    """Return the domain rules of a proto ProgramRules, each field checked and named."""
    if len(message.limits) > limits.program_limits_max:
        raise InvalidRequest(
            errors.FIELD_TOO_LONG, "rules.limits", f"at most {limits.program_limits_max} limits"
        )
    converted = []
    for i, limit in enumerate(message.limits):
        field = f"rules.limits[{i}]"
        operation: LimitedOperation | None = _OPERATIONS.get(limit.operation)
        if operation is None:
            raise InvalidRequest(
                errors.INVALID_FIELD,
                f"{field}.operation",
                "TRANSFER, REDEEM, MARKET_BUY or MARKET_SELL",
            )
        kind: AccountKind | None = None
        if limit.account_kind != common_pb2.ACCOUNT_KIND_UNSPECIFIED:
            kind = _KINDS.get(limit.account_kind)
            if kind is None:
                raise InvalidRequest(
                    errors.INVALID_FIELD, f"{field}.account_kind", "MEMBER, MERCHANT or unset"
                )
        converted.append(
            TransactionLimit(
                operation,
                kind,
                tier(f"{field}.tier", limit.tier),
                limit.min_points,
                limit.max_points,
                limit.step_points,
                limit.daily_max_points,
                limit.yearly_max_points,
            )
        )
    fee = message.transfer_fee
    transfer_fee = TransferFee(
        fee.flat_points,
        fee.per_mille,
        optional_identifier("rules.transfer_fee.fee_account_id", fee.fee_account_id),
    )
    expiry = ExpiryPolicy(
        _whole_seconds("rules.expiry.lifetime", message.expiry.lifetime),
        _whole_seconds("rules.expiry.notice", message.expiry.notice),
    )
    rules = ProgramRules(
        tuple(converted),
        message.reversal_debt_max_points,
        transfer_fee,
        expiry,
        _whole_seconds("rules.cooling_off", message.cooling_off),
        _whole_seconds("rules.pending_period", message.pending_period),
    )
    try:
        validate(rules)
    except errors.InvalidArgument as invalid:
        raise InvalidRequest(invalid.reason, invalid.metadata["field"], invalid.message) from None
    return rules


def _whole_seconds(field: str, value: Duration) -> Span:
    """Return a duration of whole seconds, not negative; refuse any other, naming `field`."""
    if value.seconds < 0 or value.nanos:
        raise InvalidRequest(errors.INVALID_FIELD, field, "whole seconds, not negative")
    return Span(value.seconds * 1000)


def fee_quote(field: str, message: common_pb2.FeeQuote) -> FeeQuote:
    """Return a transfer's fee quote: a fee of 0 to the per-command maximum, and its version."""
    if not 0 <= message.fee_points <= limits.points_amount_max:
        raise InvalidRequest(
            errors.INVALID_FIELD,
            f"{field}.fee_points",
            f"0 to {limits.points_amount_max} points, as QuoteTransfer answered",
        )
    return FeeQuote(message.fee_points, message.schedule_version)


def order_fee_quote(field: str, message: common_pb2.OrderFeeQuote) -> OrderFeeQuote:
    """Return an order's fee quote: a fee of 0 or more, in minor units, and its version."""
    if message.fee_minor < 0:
        raise InvalidRequest(
            errors.INVALID_FIELD, f"{field}.fee_minor", "0 or more, as QuoteOrder answered"
        )
    return OrderFeeQuote(message.fee_minor, message.schedule_version)


_DAY_MS: Final = 86_400_000
_NS_PER_S: Final = 1_000_000_000
_NS_PER_MS: Final = 1_000_000


def activation(field: str, value: Timestamp) -> Instant:
    """Return an issue's activation time: a valid timestamp at most the maximum days ahead.

    A moment already past is valid (the points are available at once).
    """
    if value.seconds < 0 or not 0 <= value.nanos < _NS_PER_S:
        raise InvalidRequest(errors.INVALID_FIELD, field, "a valid time after 1970")
    at_ms = value.seconds * 1000 + value.nanos // _NS_PER_MS
    latest_ms = time.time_ns() // _NS_PER_MS + limits.pending_activation_days_max * _DAY_MS
    if at_ms > latest_ms:
        raise InvalidRequest(
            errors.INVALID_FIELD,
            field,
            f"at most {limits.pending_activation_days_max} days ahead",
        )
    return Instant(at_ms) if at_ms else NEVER
