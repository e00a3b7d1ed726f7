"""The sandbox's refunds: what one is, why one is refused, and how many a payment keeps.

The rules themselves (only a confirmed payment, in its currency, never beyond its amount,
idempotent on refund_id) are applied by `Gateway.refund`, which holds the payments.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import grpc

# Refunds kept per payment. A refund holds about 0.4 KiB with its refund_id index entry, so at
# limits.sandbox_payments_max payments they add at most about 160 MiB. A cooling-off refund of
# a trade is one refund; the rest is room for partial refunds in tests and demos.
REFUNDS_PER_PAYMENT_MAX: Final = 4


class Refusal(enum.Enum):
    """Why a refund is refused: the proto's RefundRefusalReason names, without the prefix."""

    INVALID_FIELD = "INVALID_FIELD"
    PAYMENT_NOT_FOUND = "PAYMENT_NOT_FOUND"
    PAYMENT_NOT_CONFIRMED = "PAYMENT_NOT_CONFIRMED"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    REFUND_EXCEEDS_PAYMENT = "REFUND_EXCEEDS_PAYMENT"
    REFUND_ID_REUSED = "REFUND_ID_REUSED"
    TOO_MANY_REFUNDS = "TOO_MANY_REFUNDS"


# The status code each refusal is answered with: the request is malformed, names no payment,
# or cannot be made in the payment's state (a retry of it is refused again).
REFUSAL_CODES: Final = {
    Refusal.INVALID_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.PAYMENT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Refusal.PAYMENT_NOT_CONFIRMED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.CURRENCY_MISMATCH: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.REFUND_EXCEEDS_PAYMENT: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.REFUND_ID_REUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.TOO_MANY_REFUNDS: grpc.StatusCode.FAILED_PRECONDITION,
}
assert set(REFUSAL_CODES) == set(Refusal)


@dataclass(frozen=True, slots=True)
class Refund:
    """Money given back to a payment's buyer; `refund_id` is the caller's, for good."""

    refund_id: str
    provider_refund_id: str
    payment_id: str
    amount_minor: int
    currency: str
    refunded_at_ms: int
