"""Sign and check payment callbacks (`pointex.v1.PaymentCallback`).

A payment provider signs each callback with HMAC-SHA256 over a canonical string of its
fields, never over protobuf bytes: two encoders may serialise the same message differently,
while the canonical string is fixed by the contract (see the PaymentCallback comment in
protos/pointex/v1/command_service.proto). The server checks the same string with the
provider's shared secret, so both sides use the functions here.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from pointex.v1 import command_service_pb2, common_pb2

CANONICAL_VERSION: Final = "pointex-payment-callback-v1"
SIGNATURE_BYTES: Final = 32

_OUTCOME_NAMES: Final = {
    common_pb2.PAYMENT_OUTCOME_CONFIRMED: "CONFIRMED",
    common_pb2.PAYMENT_OUTCOME_FAILED: "FAILED",
}


def canonical_string(callback: command_service_pb2.PaymentCallback) -> bytes:
    """Return the UTF-8 canonical string a callback's signature covers.

    Nine lines joined by a line feed, without a trailing one. `key_id`, `signature` and
    `signed_at.nanos` are not covered.

    Raises:
        ValueError: the outcome is neither CONFIRMED nor FAILED; such a callback is never
            valid, so it has no canonical string.
    """
    outcome = _OUTCOME_NAMES.get(callback.outcome)
    if outcome is None:
        raise ValueError(f"outcome {callback.outcome} is neither CONFIRMED nor FAILED")
    lines = (
        CANONICAL_VERSION,
        callback.provider_id,
        callback.payment_id,
        callback.trade_id,
        outcome,
        str(callback.amount.amount_minor),
        callback.amount.currency,
        callback.provider_event_id,
        str(callback.signed_at.seconds),
    )
    return "\n".join(lines).encode()


def sign(callback: command_service_pb2.PaymentCallback, secret: bytes) -> bytes:
    """Return the raw 32-byte HMAC-SHA256 of the callback's canonical string under `secret`."""
    return hmac.new(secret, canonical_string(callback), hashlib.sha256).digest()


def signature_matches(callback: command_service_pb2.PaymentCallback, secret: bytes) -> bool:
    """Return whether the callback's `signature` is its HMAC under `secret` (constant time)."""
    try:
        expected = sign(callback, secret)
    except ValueError:
        return False
    return hmac.compare_digest(expected, callback.signature)


def signed_callback(
    *,
    provider_id: str,
    payment_id: str,
    trade_id: str,
    confirmed: bool,
    amount: common_pb2.Money,
    provider_event_id: str,
    secret: bytes,
    signed_at_s: int,
    key_id: str = "",
) -> command_service_pb2.PaymentCallback:
    """Return a callback with every signed field set, signed with `secret` at `signed_at_s`.

    `signed_at_s` is the provider's clock in Unix seconds (`int(time.time())`); the server
    accepts it within a window around its own clock. Sign every redelivery afresh.
    """
    callback = command_service_pb2.PaymentCallback(
        provider_id=provider_id,
        payment_id=payment_id,
        trade_id=trade_id,
        outcome=(
            common_pb2.PAYMENT_OUTCOME_CONFIRMED if confirmed else common_pb2.PAYMENT_OUTCOME_FAILED
        ),
        amount=amount,
        provider_event_id=provider_event_id,
        signed_at=Timestamp(seconds=signed_at_s),
        key_id=key_id,
    )
    callback.signature = sign(callback, secret)
    return callback
