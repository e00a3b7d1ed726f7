"""The command server's adapter for the sandbox payment provider: payments and refunds.

gRPC errors never leave this module: each status code is translated into a refusal or
ProviderUnavailable, and the translation is one table per call (`REFUSED_CODES`,
`REFUND_REFUSED_CODES`). Everything not known to be a definitive refusal is retryable,
because CreatePayment is idempotent on the trade id and RefundPayment on the refund id:
a retry can never pay, or give back, twice.
"""

from __future__ import annotations

from typing import Final

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server.payments.port import (
    PaymentCreated,
    PaymentRequest,
    PaymentRequestRefused,
    ProviderUnavailable,
    RefundDone,
    RefundRefused,
    RefundRequest,
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
# Codes after which the same refund can never be made: the gateway names why in a
# google.rpc.ErrorInfo (a RefundRefusalReason name). NOT_FOUND is among them because the
# gateway answers it for a payment it does not hold, which no retry brings back.
REFUND_REFUSED_CODES: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
# The ErrorInfo domain of the gateway's refusals (sandbox.proto, RefundRefusalReason).
SANDBOX_ERROR_DOMAIN: Final = "pointex.sandbox.v1"
_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


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

    async def refund_payment(self, request: RefundRequest, *, timeout_s: float) -> RefundDone:
        """Refund part or all of payment `request.payment_id`, or find the refund again.

        The sandbox refunds synchronously, so its answer is the refund done. The call's
        deadline is the smaller of `timeout_s` and the configured timeout.

        Raises:
            RefundRefused: the gateway refused the refund for good; `reason` is its
                RefundRefusalReason name (for example "REFUND_EXCEEDS_PAYMENT"), or the
                status code's name when it gave none.
            ProviderUnavailable: the gateway is unreachable, overloaded or the call timed out.
        """
        assert request.provider_id == self.provider_id, request.provider_id
        message = sandbox_pb2.RefundPaymentRequest(
            refund_id=request.refund_id,
            payment_id=request.payment_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
        )
        try:
            reply = await self._stub.RefundPayment(
                message, timeout=min(timeout_s, self._timeout_s), wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            raise translate_refund(error) from None
        # The gateway answers for the refund_id it was sent; anything else is its bug.
        assert reply.refund.refund_id == request.refund_id, reply.refund.refund_id
        return RefundDone(
            refund_id=reply.refund.refund_id, provider_refund_id=reply.refund.provider_refund_id
        )

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


def translate_refund(error: grpc.aio.AioRpcError) -> RefundRefused | ProviderUnavailable:
    """Return the port's exception for a failed RefundPayment call."""
    code = error.code()
    details = error.details() or ""
    if code in REFUND_REFUSED_CODES:
        return RefundRefused(_sandbox_reason(error) or code.name, details)
    return ProviderUnavailable(f"{code.name}: {details}")


def _sandbox_reason(error: grpc.aio.AioRpcError) -> str:
    """Return the gateway's ErrorInfo reason in the call's trailers, or an empty string."""
    for item in error.trailing_metadata() or ():
        # Both gRPC APIs deliver trailers as (key, value) pairs; the stubs type them loosely.
        key, value = item if isinstance(item, tuple) else ("", "")
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        info = error_details_pb2.ErrorInfo()
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Unpack(info) and info.domain == SANDBOX_ERROR_DOMAIN:
                return str(info.reason)
    return ""
