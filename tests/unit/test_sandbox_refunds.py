"""The sandbox gateway's refund rules, on a `Gateway` in memory (no gRPC server).

A payment is refunded only once confirmed, in its currency, in parts that never add up to
more than its amount, and at most REFUNDS_PER_PAYMENT_MAX times; a refund_id names one
refund for good. Every refusal has a test named after it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import grpc
import pytest

from pointex.sandbox.v1 import sandbox_pb2
from pointex.server import limits
from pointex.server.payments.sandbox.gateway import (
    Behaviour,
    Gateway,
    GatewayError,
    Outcome,
    Payment,
)
from pointex.server.payments.sandbox.refunds import REFUNDS_PER_PAYMENT_MAX, Refusal
from pointex.server.payments.sandbox.sandbox_servicer import REFUSAL_PREFIX

# Longer than any test: a payment settles only through Gateway.settle.
SLOW_DELAY_MS = 600_000
NOW_MS = 1_800_000_000_000
PAID_MINOR = 1_000


class AcceptingSender:
    """A callback sender whose command server answers every callback OK."""

    def __init__(self) -> None:
        """Record no callback yet."""
        self.sent: list[str] = []

    async def send(self, payment: Payment, *, request_id: str) -> grpc.StatusCode:
        """Record the delivery and answer OK."""
        self.sent.append(f"{payment.payment_id}:{request_id}")
        return grpc.StatusCode.OK

    async def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A started gateway whose payments settle only when a test settles them."""
    gateway = Gateway(
        Behaviour(delay_ms=SLOW_DELAY_MS, failure_rate_bps=0, duplicate_rate_bps=0),
        AcceptingSender(),
        clock_ms=lambda: NOW_MS,
    )
    gateway.start()
    yield gateway
    await gateway.drain(5)


def _payment(gateway: Gateway, outcome: Outcome | None = Outcome.CONFIRMED) -> Payment:
    payment, _ = gateway.create(
        f"T-{secrets.token_hex(6)}", PAID_MINOR, "CNY", f"buyer-{secrets.token_hex(4)}"
    )
    if outcome is not None:
        gateway.settle(payment.payment_id, outcome)
    return payment


def _refund_id() -> str:
    return f"refund-{secrets.token_hex(6)}"


def _refused(
    gateway: Gateway, payment_id: str, amount_minor: int, currency: str = "CNY"
) -> Refusal:
    with pytest.raises(GatewayError) as caught:
        gateway.refund(_refund_id(), payment_id, amount_minor, currency)
    assert caught.value.refusal is not None
    return caught.value.refusal


async def test_refund_of_a_confirmed_payment(gateway: Gateway) -> None:
    """A confirmed payment is refunded at once: the refund is recorded on the payment."""
    payment = _payment(gateway)
    refund_id = _refund_id()
    refund, refunded, created = gateway.refund(refund_id, payment.payment_id, 400, "CNY")
    assert created
    assert refunded is payment
    assert (refund.refund_id, refund.payment_id) == (refund_id, payment.payment_id)
    assert (refund.amount_minor, refund.currency) == (400, "CNY")
    assert refund.refunded_at_ms == NOW_MS
    assert refund.provider_refund_id.startswith("rfd_")
    assert payment.refunded_minor == 400
    assert list(payment.refunds) == [refund_id]


async def test_refund_is_idempotent_on_refund_id(gateway: Gateway) -> None:
    """The same refund_id and terms return the same refund and refund nothing more."""
    payment = _payment(gateway)
    refund_id = _refund_id()
    first, _, created = gateway.refund(refund_id, payment.payment_id, PAID_MINOR, "CNY")
    # A full refund leaves nothing to refund, and the retry still finds its refund.
    again, _, created_again = gateway.refund(refund_id, payment.payment_id, PAID_MINOR, "CNY")
    assert created
    assert not created_again
    assert again == first
    assert payment.refunded_minor == PAID_MINOR
    assert len(payment.refunds) == 1


async def test_refunds_add_up_to_what_was_paid(gateway: Gateway) -> None:
    """Partial refunds may add up to the payment's amount exactly."""
    payment = _payment(gateway)
    gateway.refund(_refund_id(), payment.payment_id, 600, "CNY")
    gateway.refund(_refund_id(), payment.payment_id, 400, "CNY")
    assert payment.refunded_minor == PAID_MINOR
    assert len(payment.refunds) == 2


async def test_refund_exceeds_payment(gateway: Gateway) -> None:
    """A refund beyond what is left to refund is refused and changes nothing."""
    payment = _payment(gateway)
    assert _refused(gateway, payment.payment_id, PAID_MINOR + 1) is Refusal.REFUND_EXCEEDS_PAYMENT
    gateway.refund(_refund_id(), payment.payment_id, 700, "CNY")
    with pytest.raises(GatewayError) as caught:
        gateway.refund(_refund_id(), payment.payment_id, 301, "CNY")
    assert caught.value.refusal is Refusal.REFUND_EXCEEDS_PAYMENT
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.metadata == {"refundable_minor": "300"}
    assert payment.refunded_minor == 700
    assert len(payment.refunds) == 1


@pytest.mark.parametrize("outcome", [None, Outcome.FAILED])
async def test_payment_not_confirmed(gateway: Gateway, outcome: Outcome | None) -> None:
    """A payment not settled yet, or settled FAILED, is not refunded."""
    payment = _payment(gateway, outcome)
    with pytest.raises(GatewayError) as caught:
        gateway.refund(_refund_id(), payment.payment_id, 1, "CNY")
    assert caught.value.refusal is Refusal.PAYMENT_NOT_CONFIRMED
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert payment.refunds == {}
    assert payment.refunded_minor == 0


async def test_payment_not_found(gateway: Gateway) -> None:
    """A refund of a payment the gateway does not hold is NOT_FOUND."""
    with pytest.raises(GatewayError) as caught:
        gateway.refund(_refund_id(), f"pay_{secrets.token_hex(6)}", 1, "CNY")
    assert caught.value.refusal is Refusal.PAYMENT_NOT_FOUND
    assert caught.value.code is grpc.StatusCode.NOT_FOUND


async def test_currency_mismatch(gateway: Gateway) -> None:
    """A refund in another currency than the payment's is refused."""
    payment = _payment(gateway)
    assert _refused(gateway, payment.payment_id, 1, "USD") is Refusal.CURRENCY_MISMATCH
    assert payment.refunded_minor == 0


@pytest.mark.parametrize("other", ["payment", "amount", "currency"])
async def test_refund_id_reused(gateway: Gateway, other: str) -> None:
    """A refund_id used again with another payment, amount or currency is refused."""
    payment, second = _payment(gateway), _payment(gateway)
    refund_id = _refund_id()
    gateway.refund(refund_id, payment.payment_id, 100, "CNY")
    terms = {
        "payment": (second.payment_id, 100, "CNY"),
        "amount": (payment.payment_id, 101, "CNY"),
        "currency": (payment.payment_id, 100, "USD"),
    }[other]
    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund_id, *terms)
    assert caught.value.refusal is Refusal.REFUND_ID_REUSED
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (payment.refunded_minor, second.refunded_minor) == (100, 0)


async def test_too_many_refunds(gateway: Gateway) -> None:
    """A payment keeps at most REFUNDS_PER_PAYMENT_MAX refunds; the next is refused."""
    payment = _payment(gateway)
    for _ in range(REFUNDS_PER_PAYMENT_MAX):
        gateway.refund(_refund_id(), payment.payment_id, 1, "CNY")
    with pytest.raises(GatewayError) as caught:
        gateway.refund(_refund_id(), payment.payment_id, 1, "CNY")
    assert caught.value.refusal is Refusal.TOO_MANY_REFUNDS
    assert caught.value.metadata == {"limit": str(REFUNDS_PER_PAYMENT_MAX)}
    assert payment.refunded_minor == REFUNDS_PER_PAYMENT_MAX


async def test_forgotten_payment_takes_its_refunds(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a full gateway drops a finished payment, its refunds and their ids go with it."""
    monkeypatch.setattr(limits, "sandbox_payments_max", 1)
    payment = _payment(gateway)
    refund_id = _refund_id()
    gateway.refund(refund_id, payment.payment_id, 100, "CNY")
    await payment.finished.wait()
    newer = _payment(gateway)
    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund_id, payment.payment_id, 100, "CNY")
    assert caught.value.refusal is Refusal.PAYMENT_NOT_FOUND
    # The refund_id is free again, so it may name a refund of the payment now held.
    _, refunded, created = gateway.refund(refund_id, newer.payment_id, 100, "CNY")
    assert created
    assert refunded is newer


def test_every_refusal_is_a_reason_of_the_contract() -> None:
    """The gateway's refusals and the proto's RefundRefusalReason values are the same names."""
    names = {
        name.removeprefix(REFUSAL_PREFIX)
        for name in sandbox_pb2.RefundRefusalReason.keys()  # noqa: SIM118 - not a dict.
    }
    assert names - {"UNSPECIFIED"} == {refusal.value for refusal in Refusal}
