"""Deliver one signed callback to the command server, as a real gateway's webhook would.

Every attempt is signed afresh (a new `signed_at`), so a redelivery long after the first
try is still inside the command server's window; the provider event id never changes.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import timestamp_pb2

from pointex.client.callbacks import sign
from pointex.server import limits
from pointex.server.payments.sandbox.gateway import Outcome, Payment
from pointex.v1 import command_service_pb2, command_service_pb2_grpc, common_pb2

log = logging.getLogger(__name__)

_OUTCOMES = {
    Outcome.CONFIRMED: common_pb2.PAYMENT_OUTCOME_CONFIRMED,
    Outcome.FAILED: common_pb2.PAYMENT_OUTCOME_FAILED,
}


class GrpcCallbackSender:
    """Calls CommandService.ConfirmPayment or FailPayment with a payment_provider token."""

    def __init__(
        self, *, target: str, provider_id: str, key_id: str, secret: bytes, token: str
    ) -> None:
        """Connect lazily to the command server at `target`."""
        self._provider_id = provider_id
        self._key_id = key_id
        self._secret = secret
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = command_service_pb2_grpc.CommandServiceStub(self._channel)

    def signed_callback(self, payment: Payment) -> command_service_pb2.PaymentCallback:
        """Return the payment's callback, signed now."""
        assert payment.outcome is not None, payment.payment_id
        signed_at = timestamp_pb2.Timestamp()
        signed_at.GetCurrentTime()
        callback = command_service_pb2.PaymentCallback(
            provider_id=self._provider_id,
            payment_id=payment.payment_id,
            trade_id=payment.trade_id,
            outcome=_OUTCOMES[payment.outcome],
            amount=common_pb2.Money(amount_minor=payment.amount_minor, currency=payment.currency),
            provider_event_id=payment.provider_event_id,
            signed_at=signed_at,
            key_id=self._key_id,
        )
        callback.signature = sign(callback, self._secret)
        return callback

    async def send(self, payment: Payment, *, request_id: str) -> grpc.StatusCode:
        """Deliver the callback once; return OK or the error's status code."""
        callback = self.signed_callback(payment)
        timeout_s = limits.sandbox_delivery_attempt_ms_max / 1000
        try:
            if payment.outcome is Outcome.CONFIRMED:
                await self._stub.ConfirmPayment(
                    command_service_pb2.ConfirmPaymentRequest(
                        request_id=request_id, callback=callback
                    ),
                    metadata=self._metadata,
                    timeout=timeout_s,
                )
            else:
                await self._stub.FailPayment(
                    command_service_pb2.FailPaymentRequest(
                        request_id=request_id, callback=callback
                    ),
                    metadata=self._metadata,
                    timeout=timeout_s,
                )
        except grpc.aio.AioRpcError as error:
            log.info(
                "callback not accepted",
                extra={
                    "payment_id": payment.payment_id,
                    "code": error.code().name,
                    "details": error.details() or "",
                },
            )
            return error.code()
        return grpc.StatusCode.OK

    async def close(self) -> None:
        """Close the channel to the command server."""
        await self._channel.close(grace=None)
