"""SandboxGatewayService: proto in, gateway call, proto out; refusals become statuses.

The sandbox stands in for a third-party gateway, so it answers as one would: a status code
and a message, without Pointex's ErrorInfo reasons. A refused refund also carries the
gateway's own google.rpc.ErrorInfo (domain `pointex.sandbox.v1`, a RefundRefusalReason
name), so that an adapter can tell, say, a payment refunded in full from an unknown one.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final, NoReturn

import grpc
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from pointex.server import limits
from pointex.server.payments.sandbox.gateway import (
    Delivery,
    Gateway,
    GatewayError,
    Outcome,
    Payment,
)
from pointex.server.payments.sandbox.refunds import Refund, Refusal

# The google.rpc.ErrorInfo domain of the gateway's refund refusals; each reason is the name of
# a RefundRefusalReason without REFUSAL_PREFIX (a unit test keeps Refusal and the enum equal).
ERROR_DOMAIN: Final = "pointex.sandbox.v1"
REFUSAL_PREFIX: Final = "REFUND_REFUSAL_REASON_"

_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{limits.id_chars_max}}}")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_OUTCOMES: Final = {
    sandbox_pb2.OUTCOME_CONFIRMED: Outcome.CONFIRMED,
    sandbox_pb2.OUTCOME_FAILED: Outcome.FAILED,
}
_OUTCOMES_TO_PROTO: Final = {outcome: value for value, outcome in _OUTCOMES.items()}
_DELIVERY_TO_PROTO: Final = {
    Delivery.PENDING: sandbox_pb2.DELIVERY_STATUS_PENDING,
    Delivery.DELIVERING: sandbox_pb2.DELIVERY_STATUS_DELIVERING,
    Delivery.DELIVERED: sandbox_pb2.DELIVERY_STATUS_DELIVERED,
    Delivery.REJECTED: sandbox_pb2.DELIVERY_STATUS_REJECTED,
    Delivery.ABANDONED: sandbox_pb2.DELIVERY_STATUS_ABANDONED,
}

Context = grpc.aio.ServicerContext[Any, Any]


def refund_to_proto(refund: Refund) -> sandbox_pb2.Refund:
    """Return the wire form of a refund."""
    refunded_at = timestamp_pb2.Timestamp()
    refunded_at.FromMilliseconds(refund.refunded_at_ms)
    return sandbox_pb2.Refund(
        refund_id=refund.refund_id,
        provider_refund_id=refund.provider_refund_id,
        payment_id=refund.payment_id,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        refunded_at=refunded_at,
    )


def payment_to_proto(payment: Payment) -> sandbox_pb2.Payment:
    """Return the wire form of a payment."""
    outcome = sandbox_pb2.OUTCOME_UNSPECIFIED
    if payment.outcome is not None:
        outcome = _OUTCOMES_TO_PROTO[payment.outcome]
    return sandbox_pb2.Payment(
        payment_id=payment.payment_id,
        trade_id=payment.trade_id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        buyer_account_id=payment.buyer_account_id,
        checkout_url=payment.checkout_url,
        outcome=outcome,
        provider_event_id=payment.provider_event_id,
        delivery_status=_DELIVERY_TO_PROTO[payment.delivery],
        delivery_attempts=payment.attempts,
        duplicates_sent=payment.duplicates_sent,
        last_error=payment.last_error,
        refunded_minor=payment.refunded_minor,
        refunds=[refund_to_proto(refund) for refund in payment.refunds.values()],
    )


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises.


async def _abort_refund(context: Context, error: GatewayError) -> NoReturn:
    """End a RefundPayment call with the error's status and, if it has one, its refusal."""
    if error.refusal is None:
        await _abort(context, error.code, error.message)
    info = error_details_pb2.ErrorInfo(
        reason=error.refusal.value, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name), message=error.message, details=[packed]
    )
    # grpc-stubs predates abort_with_status on the aio context; grpc.aio has it.
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
    raise AssertionError("abort_with_status returned")  # pragma: no cover - it always raises.


class SandboxGatewayServicer(sandbox_pb2_grpc.SandboxGatewayServiceServicer):
    """The sandbox gateway's gRPC API over a `Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        """Serve `gateway`."""
        self._gateway = gateway

    async def CreatePayment(
        self, request: sandbox_pb2.CreatePaymentRequest, context: Context
    ) -> sandbox_pb2.CreatePaymentResponse:
        """Create the trade's payment, or return the one it has."""
        problem = _create_problem(request)
        if problem:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            payment, created = self._gateway.create(
                request.trade_id, request.amount_minor, request.currency, request.buyer_account_id
            )
        except GatewayError as error:
            await _abort(context, error.code, error.message)
        return sandbox_pb2.CreatePaymentResponse(
            payment_id=payment.payment_id, checkout_url=payment.checkout_url, created=created
        )

    async def SettlePayment(
        self, request: sandbox_pb2.SettlePaymentRequest, context: Context
    ) -> sandbox_pb2.SettlePaymentResponse:
        """Settle a payment now; optionally wait until its callback's delivery has ended."""
        outcome = _OUTCOMES.get(request.outcome)
        if outcome is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "outcome: CONFIRMED or FAILED")
        try:
            payment = self._gateway.settle(request.payment_id, outcome)
        except GatewayError as error:
            await _abort(context, error.code, error.message)
        if request.wait_for_delivery:
            remaining_s = context.time_remaining()
            wait_s = limits.sandbox_settle_wait_ms_max / 1000
            if remaining_s is not None:
                wait_s = min(wait_s, remaining_s)
            try:
                await asyncio.wait_for(payment.finished.wait(), wait_s)
            except TimeoutError:
                await _abort(
                    context, grpc.StatusCode.DEADLINE_EXCEEDED, "the delivery has not ended yet"
                )
        return sandbox_pb2.SettlePaymentResponse(payment=payment_to_proto(payment))

    async def GetPayment(
        self, request: sandbox_pb2.GetPaymentRequest, context: Context
    ) -> sandbox_pb2.GetPaymentResponse:
        """Return a payment and its delivery."""
        try:
            payment = self._gateway.get(request.payment_id)
        except GatewayError as error:
            await _abort(context, error.code, error.message)
        return sandbox_pb2.GetPaymentResponse(payment=payment_to_proto(payment))

    async def RefundPayment(
        self, request: sandbox_pb2.RefundPaymentRequest, context: Context
    ) -> sandbox_pb2.RefundPaymentResponse:
        """Refund part or all of a confirmed payment, or return the refund already made."""
        field, problem = _refund_problem(request)
        if problem:
            await _abort_refund(
                context,
                GatewayError.refund_refused(
                    Refusal.INVALID_FIELD, f"{field}: {problem}", {"field": field}
                ),
            )
        try:
            refund, payment, created = self._gateway.refund(
                request.refund_id, request.payment_id, request.amount_minor, request.currency
            )
        except GatewayError as error:
            await _abort_refund(context, error)
        return sandbox_pb2.RefundPaymentResponse(
            refund=refund_to_proto(refund),
            payment_refunded_minor=payment.refunded_minor,
            created=created,
        )


def _create_problem(request: sandbox_pb2.CreatePaymentRequest) -> str:
    """Return what is wrong with a CreatePayment request, or an empty string."""
    if not _ID.fullmatch(request.trade_id):
        return "trade_id: 1-64 of A-Z a-z 0-9 _ . : -"
    if request.amount_minor <= 0:
        return "amount_minor: must be positive"
    if not _CURRENCY.fullmatch(request.currency):
        return "currency: three upper-case letters"
    if not _ID.fullmatch(request.buyer_account_id):
        return "buyer_account_id: 1-64 of A-Z a-z 0-9 _ . : -"
    return ""


def _refund_problem(request: sandbox_pb2.RefundPaymentRequest) -> tuple[str, str]:
    """Return the malformed field of a RefundPayment request and why, or two empty strings."""
    if not _ID.fullmatch(request.refund_id):
        return "refund_id", "1-64 of A-Z a-z 0-9 _ . : -"
    if not _ID.fullmatch(request.payment_id):
        return "payment_id", "1-64 of A-Z a-z 0-9 _ . : -"
    if request.amount_minor <= 0:
        return "amount_minor", "must be positive"
    if not _CURRENCY.fullmatch(request.currency):
        return "currency", "three upper-case letters"
    return "", ""
