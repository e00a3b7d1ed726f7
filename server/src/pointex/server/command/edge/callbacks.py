"""ConfirmPayment and FailPayment at the edge: verify the callback, then hand it on.

Checks run in the contract's order: the caller's binding to the provider, field syntax,
signature, signed_at window (payments/verification.py), the request id; then the
application layer (command/app/payment_callbacks.py) deduplicates on the provider event
id, matches the trade and moves it on. Every rejection records nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from pointex.client.positions import position_message
from pointex.server.command.app.idempotency import KEY_HEX_CHARS, Request
from pointex.server.command.app.payment_callbacks import PaymentCallbacks, VerifiedCallback
from pointex.server.domain import trade as trade_model
from pointex.server.domain.trade import TradeStatus
from pointex.server.domain.values import Instant, Money, Principal, Role
from pointex.server.grpc_edge import convert
from pointex.server.payments.verification import CallbackVerifier
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

Response = TypeVar("Response", pb.ConfirmPaymentResponse, pb.FailPaymentResponse)

# What a callback's reply reports: a callback leaves a trade settled or cancelled (or finds
# it refunded, or its refund under way).
_STATUS = {
    TradeStatus.SETTLED: common_pb2.TRADE_STATUS_SETTLED,
    TradeStatus.CANCELLED: common_pb2.TRADE_STATUS_CANCELLED,
    TradeStatus.REFUNDING: common_pb2.TRADE_STATUS_REFUNDING,
    TradeStatus.REFUNDED: common_pb2.TRADE_STATUS_REFUNDED,
}


@dataclass(frozen=True, slots=True)
class _Replies(Generic[Response]):
    """The replies of ConfirmPayment or FailPayment."""

    response_type: type[Response]

    def reply(self, trade_id: str, status: TradeStatus, *, refund_required: bool) -> Response:
        return self.response_type(
            trade_id=trade_id, trade_status=_STATUS[status], refund_required=refund_required
        )

    def encode(self, reply: Response) -> bytes:
        return reply.SerializeToString(deterministic=True)

    def at(self, reply: Response, position: int) -> Response:
        reply.position.CopyFrom(position_message(position))
        return reply

    def duplicate(self, data: bytes, position: int) -> Response:
        reply = self.at(self.response_type.FromString(data), position)
        reply.duplicate = True
        return reply


class CallbackEdge:
    """Verify payment callbacks and apply them through the application layer."""

    def __init__(self, callbacks: PaymentCallbacks, verifier: CallbackVerifier) -> None:
        """Verify with `verifier`, then apply with `callbacks`."""
        self._callbacks = callbacks
        self._verifier = verifier

    async def handle(
        self,
        principal: Principal,
        request: pb.ConfirmPaymentRequest | pb.FailPaymentRequest,
        response_type: type[Response],
    ) -> Response:
        """Verify and apply one callback; return the reply (the original one for a redelivery)."""
        confirmed = isinstance(request, pb.ConfirmPaymentRequest)
        callback = request.callback
        provider = principal.principal_id if principal.role is Role.PAYMENT_PROVIDER else None
        outcome = (
            common_pb2.PAYMENT_OUTCOME_CONFIRMED if confirmed else common_pb2.PAYMENT_OUTCOME_FAILED
        )
        self._verifier.check(
            callback,
            caller_provider_id=provider,
            now_unix_s=self._callbacks.now_unix_s(),
            outcome=outcome,
        )
        convert.request_id(request.request_id)
        rpc = type(request).__name__.removesuffix("Request")
        verified = VerifiedCallback(
            Request(request.request_id, rpc, _business_digest(callback)),
            _event_key(callback),
            _domain_callback(callback, confirmed=confirmed),
        )
        return await self._callbacks.apply(
            principal.principal_id, verified, _Replies(response_type)
        )


def _event_key(callback: pb.PaymentCallback) -> str:
    scope = f"callback:{callback.provider_id}\x00{callback.provider_event_id}"
    return hashlib.sha256(scope.encode()).hexdigest()[:KEY_HEX_CHARS]


def _business_digest(callback: pb.PaymentCallback) -> bytes:
    """Digest the fields a redelivery must repeat (not signed_at, signature or key id)."""
    fields = (
        callback.payment_id,
        callback.trade_id,
        str(callback.outcome),
        str(callback.amount.amount_minor),
        callback.amount.currency,
    )
    return hashlib.sha256("\n".join(fields).encode()).digest()


def _domain_callback(callback: pb.PaymentCallback, *, confirmed: bool) -> trade_model.Callback:
    """Return the domain's view of a verified callback."""
    return trade_model.Callback(
        callback.provider_id,
        callback.payment_id,
        callback.trade_id,
        confirmed,
        Money(callback.amount.amount_minor, callback.amount.currency),
        callback.provider_event_id,
        Instant(callback.signed_at.seconds * 1000),
        callback.key_id,
    )
