"""Refunds through the command server's adapter against the real sandbox server, over gRPC.

The sandbox runs on port 0 (`create_server`, as `pointex-sandbox-provider` runs it) with a
callback sender whose command server accepts every callback: these tests are about
RefundPayment, GetPayment and the adapter's translation of the gateway's answers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server.config import SandboxConfig
from pointex.server.payments.port import (
    PaymentRequest,
    ProviderUnavailable,
    RefundRefused,
    RefundRequest,
)
from pointex.server.payments.sandbox.gateway import Payment
from pointex.server.payments.sandbox.server import SandboxServer, create_server
from pointex.server.payments.sandbox_client import SandboxProvider

WAIT_S = 10
# Longer than any test: a payment settles only through SettlePayment.
SLOW_DELAY_MS = 600_000
PAID_MINOR = 12_550


class AcceptingSender:
    """A callback sender whose command server answers every callback OK."""

    async def send(self, payment: Payment, *, request_id: str) -> grpc.StatusCode:
        """Answer OK without calling anything."""
        assert payment.outcome is not None, request_id
        return grpc.StatusCode.OK

    async def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """The running sandbox, a raw stub of its API, and the command server's adapter to it."""

    server: SandboxServer
    stub: sandbox_pb2_grpc.SandboxGatewayServiceAsyncStub
    provider: SandboxProvider


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox on a free port whose payments settle only through SettlePayment."""
    provider_id = f"sbx-{secrets.token_hex(4)}"
    config = SandboxConfig(
        listen="127.0.0.1:0",
        command_target="127.0.0.1:1",
        provider_id=provider_id,
        key_id="",
        secret=secrets.token_urlsafe(32).encode(),
        callback_token=secrets.token_urlsafe(24),
        delay_ms=SLOW_DELAY_MS,
        failure_rate_bps=0,
        duplicate_rate_bps=0,
        shutdown_grace_s=5,
        log_level="INFO",
        log_format="text",
    )
    server = await create_server(config, sender=AcceptingSender())
    target = f"127.0.0.1:{server.port}"
    provider = SandboxProvider(provider_id=provider_id, target=target, timeout_s=WAIT_S)
    async with grpc.aio.insecure_channel(target) as channel:
        yield Sandbox(server, sandbox_pb2_grpc.SandboxGatewayServiceStub(channel), provider)
    await provider.close()
    await server.stop(0)


async def _paid(
    sandbox: Sandbox, outcome: sandbox_pb2.Outcome.ValueType = sandbox_pb2.OUTCOME_CONFIRMED
) -> str:
    """Create a trade's payment through the adapter, settle it, and return its payment id."""
    created = await sandbox.provider.create_payment(
        PaymentRequest(
            trade_id=f"T-{secrets.token_hex(6)}",
            provider_id=sandbox.provider.provider_id,
            amount_minor=PAID_MINOR,
            currency="CNY",
            payment_deadline_unix_s=int(time.time()) + 900,
            buyer_account_id=f"buyer-{secrets.token_hex(4)}",
        ),
        timeout_s=WAIT_S,
    )
    await sandbox.stub.SettlePayment(
        sandbox_pb2.SettlePaymentRequest(payment_id=created.payment_id, outcome=outcome),
        timeout=WAIT_S,
    )
    return created.payment_id


def _refund(
    sandbox: Sandbox, payment_id: str, amount_minor: int, refund_id: str = ""
) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id or f"refund-{secrets.token_hex(6)}",
        trade_id=f"T-{secrets.token_hex(6)}",
        provider_id=sandbox.provider.provider_id,
        payment_id=payment_id,
        amount_minor=amount_minor,
        currency="CNY",
    )


async def _payment(sandbox: Sandbox, payment_id: str) -> sandbox_pb2.Payment:
    reply = await sandbox.stub.GetPayment(
        sandbox_pb2.GetPaymentRequest(payment_id=payment_id), timeout=WAIT_S
    )
    return reply.payment


async def test_adapter_refund_is_idempotent_and_bounded_by_the_payment(sandbox: Sandbox) -> None:
    """Twice the same refund_id is one refund; a refund beyond the rest is refused for good."""
    payment_id = await _paid(sandbox)
    request = _refund(sandbox, payment_id, 10_000)
    first = await sandbox.provider.refund_payment(request, timeout_s=WAIT_S)
    again = await sandbox.provider.refund_payment(request, timeout_s=WAIT_S)
    with pytest.raises(RefundRefused) as caught:
        await sandbox.provider.refund_payment(
            _refund(sandbox, payment_id, PAID_MINOR - 10_000 + 1), timeout_s=WAIT_S
        )
    payment = await _payment(sandbox, payment_id)
    assert first == again
    assert first.refund_id == request.refund_id
    assert first.provider_refund_id.startswith("rfd_")
    assert caught.value.reason == "REFUND_EXCEEDS_PAYMENT"
    assert payment.refunded_minor == 10_000
    [refund] = payment.refunds
    assert (refund.refund_id, refund.provider_refund_id) == (
        first.refund_id,
        first.provider_refund_id,
    )
    assert (refund.payment_id, refund.amount_minor, refund.currency) == (payment_id, 10_000, "CNY")
    assert abs(refund.refunded_at.ToSeconds() - time.time()) < WAIT_S


async def test_adapter_refunds_the_rest_exactly(sandbox: Sandbox) -> None:
    """Two partial refunds that add up to the payment's amount are both made."""
    payment_id = await _paid(sandbox)
    done = [
        await sandbox.provider.refund_payment(_refund(sandbox, payment_id, part), timeout_s=WAIT_S)
        for part in (PAID_MINOR - 50, 50)
    ]
    payment = await _payment(sandbox, payment_id)
    assert payment.refunded_minor == PAID_MINOR
    assert [refund.refund_id for refund in payment.refunds] == [d.refund_id for d in done]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("pending", "PAYMENT_NOT_CONFIRMED"),
        ("failed", "PAYMENT_NOT_CONFIRMED"),
        ("unknown", "PAYMENT_NOT_FOUND"),
        ("reused", "REFUND_ID_REUSED"),
        ("malformed", "INVALID_FIELD"),
    ],
)
async def test_adapter_refusals_carry_the_gateway_reason(
    sandbox: Sandbox, case: str, reason: str
) -> None:
    """Each refusal of the gateway reaches the caller as RefundRefused with its reason."""
    request = await _refusal_case(sandbox, case)
    with pytest.raises(RefundRefused) as caught:
        await sandbox.provider.refund_payment(request, timeout_s=WAIT_S)
    assert caught.value.reason == reason


async def _refusal_case(sandbox: Sandbox, case: str) -> RefundRequest:
    """Return a refund request that the gateway refuses in the way `case` names."""
    if case == "unknown":
        return _refund(sandbox, f"pay_{secrets.token_hex(6)}", 1)
    if case == "malformed":
        return _refund(sandbox, await _paid(sandbox), 1, refund_id="not an id")
    if case == "failed":
        return _refund(sandbox, await _paid(sandbox, sandbox_pb2.OUTCOME_FAILED), 1)
    if case == "pending":
        created = await sandbox.stub.CreatePayment(
            sandbox_pb2.CreatePaymentRequest(
                trade_id=f"T-{secrets.token_hex(6)}",
                amount_minor=PAID_MINOR,
                currency="CNY",
                buyer_account_id="buyer-1",
            ),
            timeout=WAIT_S,
        )
        return _refund(sandbox, created.payment_id, 1)
    assert case == "reused", case
    first = _refund(sandbox, await _paid(sandbox), 1)
    await sandbox.provider.refund_payment(first, timeout_s=WAIT_S)
    return _refund(sandbox, first.payment_id, 2, refund_id=first.refund_id)


async def test_refund_refusal_status_carries_error_info(sandbox: Sandbox) -> None:
    """RefundPayment's refusal is FAILED_PRECONDITION with the gateway's ErrorInfo."""
    payment_id = await _paid(sandbox)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sandbox.stub.RefundPayment(
            sandbox_pb2.RefundPaymentRequest(
                refund_id="refund-over",
                payment_id=payment_id,
                amount_minor=PAID_MINOR + 1,
                currency="CNY",
            ),
            timeout=WAIT_S,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    [details] = [
        item[1]
        for item in caught.value.trailing_metadata() or ()
        if isinstance(item, tuple) and item[0] == "grpc-status-details-bin"
    ]
    assert isinstance(details, bytes)
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("pointex.sandbox.v1", "REFUND_EXCEEDS_PAYMENT")
    assert dict(info.metadata) == {"refundable_minor": str(PAID_MINOR)}


async def test_refund_reply_says_whether_it_was_created(sandbox: Sandbox) -> None:
    """RefundPayment answers the refund and the payment's total; a retry is not created."""
    payment_id = await _paid(sandbox)
    request = sandbox_pb2.RefundPaymentRequest(
        refund_id=f"refund-{secrets.token_hex(6)}",
        payment_id=payment_id,
        amount_minor=300,
        currency="CNY",
    )
    first = await sandbox.stub.RefundPayment(request, timeout=WAIT_S)
    again = await sandbox.stub.RefundPayment(request, timeout=WAIT_S)
    assert first.created
    assert not again.created
    assert first.refund == again.refund
    assert (first.payment_refunded_minor, again.payment_refunded_minor) == (300, 300)


async def test_adapter_refund_to_an_unreachable_gateway_is_retryable(
    unused_tcp_port: int,
) -> None:
    """A gateway nobody listens for is ProviderUnavailable, never a refusal."""
    provider = SandboxProvider(
        provider_id="sandbox", target=f"127.0.0.1:{unused_tcp_port}", timeout_s=1
    )
    request = RefundRequest(
        refund_id="refund-1",
        trade_id="T-1",
        provider_id="sandbox",
        payment_id="pay_1",
        amount_minor=1,
        currency="CNY",
    )
    with pytest.raises(ProviderUnavailable):
        await provider.refund_payment(request, timeout_s=1)
    await provider.close()
