"""The command server's adapter for the sandbox payment provider: CreatePayment over gRPC.

gRPC errors never leave this module: each status code is translated into one of the
port's two exceptions, and the translation is one table (`REFUSED_CODES`). Everything
not known to be a definitive refusal is retryable, because CreatePayment is idempotent
on the trade id and a retry can never pay twice.
"""

from __future__ import annotations

from typing import Final

import grpc
from google.protobuf import timestamp_pb2

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server.payments.port import (
    PaymentCreated,
    PaymentRequest,
    PaymentRequestRefused,
    ProviderUnavailable,
)

# Codes after which the same request can never succeed: the trade is cancelled. Any other
# code (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN, a refused
# credential...) leaves the outcome open and is retried.
REFUSED_CODES: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class SandboxProvider:
    """A PaymentProvider that asks the sandbox gateway for payments."""

    def __init__(self, *, provider_id: str, target: str, timeout_s: float) -> None:
        """Connect lazily to the gateway at `target`; no call takes longer than `timeout_s`."""
        assert timeout_s > 0, timeout_s
        self.provider_id = provider_id
        self._timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = sandbox_pb2_grpc.SandboxGatewayServiceStub(self._channel)

    async def create_payment(self, request: PaymentRequest, *, timeout_s: float) -> PaymentCreated:
        """Create (or find again) the payment of `request.trade_id`.

        The call's deadline is the smaller of `timeout_s` and the configured timeout.

        Raises:
            PaymentRequestRefused: the gateway refused the request for good.
            ProviderUnavailable: the gateway is unreachable, overloaded or the call timed out.
        """
        assert request.provider_id == self.provider_id, request.provider_id
        deadline = timestamp_pb2.Timestamp(seconds=request.payment_deadline_unix_s)
        message = sandbox_pb2.CreatePaymentRequest(
            trade_id=request.trade_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            payment_deadline=deadline,
            buyer_account_id=request.buyer_account_id,
        )
        try:
            reply = await self._stub.CreatePayment(
                message, timeout=min(timeout_s, self._timeout_s), wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            raise translate(error) from None
        return PaymentCreated(payment_id=reply.payment_id, checkout_url=reply.checkout_url)

    async def close(self) -> None:
        """Close the channel to the gateway."""
        await self._channel.close(grace=None)


def translate(error: grpc.aio.AioRpcError) -> PaymentRequestRefused | ProviderUnavailable:
    """Return the port's exception for a failed CreatePayment call."""
    code = error.code()
    details = error.details() or ""
    if code in REFUSED_CODES:
        return PaymentRequestRefused(code.name, details)
    return ProviderUnavailable(f"{code.name}: {details}")
