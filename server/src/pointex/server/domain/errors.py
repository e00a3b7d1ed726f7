"""Rejections of commands: every one is a `DomainError` with a machine-readable reason.

The reason strings are the names of `pointex.v1.ErrorReason` values without their
`ERROR_REASON_` prefix. The subclass decides the gRPC status code (grpc_edge/status.py
holds that table); the domain knows nothing of gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class DomainError(Exception):
    """A command was rejected; nothing changed."""

    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        """Record the machine-readable reason, a short message and string metadata."""
        assert reason.isupper(), reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata))


class InvalidArgument(DomainError):
    """The command is malformed whatever the state (INVALID_ARGUMENT)."""


class NotFound(DomainError):
    """The command names something that does not exist (NOT_FOUND)."""


class AlreadyExists(DomainError):
    """The command would create something that exists already (ALREADY_EXISTS)."""


class FailedPrecondition(DomainError):
    """The state does not allow the command now (FAILED_PRECONDITION)."""


class PermissionDenied(DomainError):
    """The caller may not do this to this object (PERMISSION_DENIED)."""


class Aborted(DomainError):
    """The command conflicts with one still running; retry it later (ABORTED)."""


class Unauthenticated(DomainError):
    """The caller presented no valid credential (UNAUTHENTICATED)."""


# Reasons, as constants so a typo is a NameError rather than a wrong reason on the wire.
INVALID_FIELD = "INVALID_FIELD"
FIELD_TOO_LONG = "FIELD_TOO_LONG"
AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
BALANCE_CEILING_EXCEEDED = "BALANCE_CEILING_EXCEEDED"
ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
ACCOUNT_ALREADY_EXISTS = "ACCOUNT_ALREADY_EXISTS"
ACCOUNT_KIND_MISMATCH = "ACCOUNT_KIND_MISMATCH"
ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
ACCOUNT_NOT_EMPTY = "ACCOUNT_NOT_EMPTY"
MALFORMED_REQUEST = "MALFORMED_REQUEST"
SAME_ACCOUNT = "SAME_ACCOUNT"
INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
NOT_OWNER = "NOT_OWNER"
ROLE_FORBIDDEN = "ROLE_FORBIDDEN"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"

# Program rules (domain/program.py).
AMOUNT_BELOW_MINIMUM = "AMOUNT_BELOW_MINIMUM"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
AMOUNT_NOT_IN_STEPS = "AMOUNT_NOT_IN_STEPS"
PROGRAM_RULES_CHANGED = "PROGRAM_RULES_CHANGED"

# Reversals (domain/processes/transfer.py).
TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND"
TRANSFER_NOT_REVERSIBLE = "TRANSFER_NOT_REVERSIBLE"
TRANSFER_ALREADY_REVERSED = "TRANSFER_ALREADY_REVERSED"
REVERSAL_EXCEEDS_ORIGINAL = "REVERSAL_EXCEEDS_ORIGINAL"
POINTS_ALREADY_SPENT = "POINTS_ALREADY_SPENT"
TOO_MANY_PENDING_ISSUES = "TOO_MANY_PENDING_ISSUES"
FEE_SCHEDULE_CHANGED = "FEE_SCHEDULE_CHANGED"

# Cooling-off refunds of market purchases (domain/account_market.py, processes/trade.py).
PURCHASE_NOT_REFUNDABLE = "PURCHASE_NOT_REFUNDABLE"
COOLING_OFF_ENDED = "COOLING_OFF_ENDED"
PURCHASE_POINTS_SPENT = "PURCHASE_POINTS_SPENT"

# No longer sent: a cluster that splits its slice ranges trades across them (scale-out.md).
MARKETS_NOT_ON_SPLIT_RANGES = "MARKETS_NOT_ON_SPLIT_RANGES"

# Payment callbacks: who sent it and whether its signature holds (payments/verification.py).
PROVIDER_MISMATCH = "PROVIDER_MISMATCH"
UNKNOWN_PROVIDER = "UNKNOWN_PROVIDER"
SIGNATURE_MISSING = "SIGNATURE_MISSING"
SIGNATURE_INVALID = "SIGNATURE_INVALID"
SIGNATURE_EXPIRED = "SIGNATURE_EXPIRED"

# Market reasons.
MARKET_NOT_FOUND = "MARKET_NOT_FOUND"
MARKET_CLOSED = "MARKET_CLOSED"
ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
CLIENT_ORDER_ID_REUSED = "CLIENT_ORDER_ID_REUSED"
PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
NOTIONAL_OVERFLOW = "NOTIONAL_OVERFLOW"
TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"
TRADE_NOT_FOUND = "TRADE_NOT_FOUND"
TRADE_MISMATCH = "TRADE_MISMATCH"
AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
PAYMENT_NOT_FOUND = "PAYMENT_NOT_FOUND"
PROVIDER_EVENT_ID_REUSED = "PROVIDER_EVENT_ID_REUSED"
REQUEST_IN_PROGRESS = "REQUEST_IN_PROGRESS"
CONCURRENT_MODIFICATION = "CONCURRENT_MODIFICATION"
