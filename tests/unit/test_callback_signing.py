"""The SDK's payment-callback signature: the contract's example vector and field coverage."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from pointex.client.callbacks import canonical_string, sign, signature_matches
from pointex.v1 import command_service_pb2, common_pb2

SECRET = b"whsec_test_secret"
EXAMPLE_SIGNATURE = "16a9c76549e659e41a4714ad3b9dcb94019f1c34596aa6c7e7cb1714a04cc25b"
EXAMPLE_CANONICAL = (
    b"pointex-payment-callback-v1\nsandbox\npay_01HZX3\nT-000042\nCONFIRMED\n12550\nCNY\n"
    b"evt_9f2c\n1767225600"
)


def example() -> command_service_pb2.PaymentCallback:
    """Return the callback of the example in the PaymentCallback comment."""
    callback = command_service_pb2.PaymentCallback(
        provider_id="sandbox",
        payment_id="pay_01HZX3",
        trade_id="T-000042",
        outcome=common_pb2.PAYMENT_OUTCOME_CONFIRMED,
        amount=common_pb2.Money(amount_minor=12550, currency="CNY"),
        provider_event_id="evt_9f2c",
    )
    callback.signed_at.seconds = 1767225600
    return callback


def test_example_vector_canonical_string() -> None:
    """The example callback's canonical string is exactly the one the contract prints."""
    assert canonical_string(example()) == EXAMPLE_CANONICAL


def test_example_vector_signature() -> None:
    """The example callback signed with the example secret gives the contract's signature."""
    signature = sign(example(), SECRET)
    assert len(signature) == 32
    assert signature.hex() == EXAMPLE_SIGNATURE


def test_signature_matches_the_example() -> None:
    """A callback carrying the contract's signature matches under the example secret only."""
    callback = example()
    callback.signature = bytes.fromhex(EXAMPLE_SIGNATURE)
    assert signature_matches(callback, SECRET)
    assert not signature_matches(callback, b"whsec_other_secret")


def _change_provider(c: command_service_pb2.PaymentCallback) -> None:
    c.provider_id = "other"


def _change_payment(c: command_service_pb2.PaymentCallback) -> None:
    c.payment_id = "pay_other"


def _change_trade(c: command_service_pb2.PaymentCallback) -> None:
    c.trade_id = "T-000043"


def _change_outcome(c: command_service_pb2.PaymentCallback) -> None:
    c.outcome = common_pb2.PAYMENT_OUTCOME_FAILED


def _change_amount(c: command_service_pb2.PaymentCallback) -> None:
    c.amount.amount_minor = 12551


def _change_currency(c: command_service_pb2.PaymentCallback) -> None:
    c.amount.currency = "USD"


def _change_event(c: command_service_pb2.PaymentCallback) -> None:
    c.provider_event_id = "evt_9f2d"


def _change_time(c: command_service_pb2.PaymentCallback) -> None:
    c.signed_at.seconds += 1


@pytest.mark.parametrize(
    "change",
    [
        _change_provider,
        _change_payment,
        _change_trade,
        _change_outcome,
        _change_amount,
        _change_currency,
        _change_event,
        _change_time,
    ],
)
def test_every_signed_field_changes_the_signature(
    change: Callable[[command_service_pb2.PaymentCallback], None],
) -> None:
    """Changing any signed field gives another signature, so the old one no longer matches."""
    callback = example()
    callback.signature = sign(callback, SECRET)
    change(callback)
    assert sign(callback, SECRET).hex() != EXAMPLE_SIGNATURE
    assert not signature_matches(callback, SECRET)


def test_unsigned_fields_do_not_change_the_signature() -> None:
    """key_id and the nanos of signed_at are outside the canonical string."""
    callback = example()
    callback.key_id = f"k-{secrets.token_hex(4)}"
    callback.signed_at.nanos = 999
    assert sign(callback, SECRET).hex() == EXAMPLE_SIGNATURE


def test_negative_and_zero_amounts_render_in_base_ten() -> None:
    """Zero renders as "0" and a negative amount with a leading '-', as the contract says."""
    callback = example()
    callback.amount.amount_minor = 0
    assert b"\nCONFIRMED\n0\nCNY\n" in canonical_string(callback)
    callback.amount.amount_minor = -5
    assert b"\nCONFIRMED\n-5\nCNY\n" in canonical_string(callback)


def test_unspecified_outcome_has_no_canonical_string() -> None:
    """A callback without a valid outcome cannot be signed and never matches."""
    callback = example()
    callback.outcome = common_pb2.PAYMENT_OUTCOME_UNSPECIFIED
    with pytest.raises(ValueError, match="outcome"):
        canonical_string(callback)
    callback.signature = bytes(32)
    assert not signature_matches(callback, SECRET)
