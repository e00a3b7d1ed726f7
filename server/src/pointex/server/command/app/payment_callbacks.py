"""ConfirmPayment and FailPayment: verify the provider's callback, then move the trade on.

Checks run in the contract's order: the caller's binding to the provider, field syntax,
signature, signed_at window (payments/verification.py), then deduplication on the
provider event id, then the match with the trade (domain/trade.py). Every rejection
records nothing.

Every accepted callback is recorded on a stream keyed by (provider, provider event id),
with the change it causes if any (a failure after settlement, or a second late
confirmation, changes nothing but is still recorded): a redelivery of that event,
re-signed at another time, finds the record and gets the original reply, marked
`duplicate`.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TypeVar

from pointex.client.positions import position_message
from pointex.server import limits
from pointex.server.command.app.idempotency import KEY_HEX_CHARS, Request, recorded_reply
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.trade_processes import TradeConflict, TradeProcesses
from pointex.server.domain import errors, streams
from pointex.server.domain import trade as trade_model
from pointex.server.domain.events import CommandRecorded
from pointex.server.domain.processes import trade as process
from pointex.server.domain.trade import TradeStatus
from pointex.server.domain.values import Instant, Money, Principal, Role
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, StreamAppend, WrongExpectedVersion
from pointex.server.grpc_edge import convert
from pointex.server.payments.verification import CallbackVerifier
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import common_pb2

Response = TypeVar("Response", pb.ConfirmPaymentResponse, pb.FailPaymentResponse)

# What a callback's reply reports: a callback leaves a trade settled or cancelled.
_STATUS = {
    TradeStatus.SETTLED: common_pb2.TRADE_STATUS_SETTLED,
    TradeStatus.CANCELLED: common_pb2.TRADE_STATUS_CANCELLED,
}


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


class PaymentCallbacks:
    """Apply verified payment callbacks to trades."""

    def __init__(
        self,
        *,
        store: EventStore,
        lookup: RecordLookup,
        processes: TradeProcesses,
        verifier: CallbackVerifier,
    ) -> None:
        """Verify callbacks with `verifier` and drive their trades through `processes`."""
        self._store = store
        self._lookup = lookup
        self._processes = processes
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
        now = self._processes.now()
        self._verifier.check(
            callback, caller_provider_id=provider, now_unix_s=now.unix_ms // 1000, outcome=outcome
        )
        convert.request_id(request.request_id)
        stream = streams.request(_event_key(callback))
        digest = _business_digest(callback)
        if await self._lookup.exists(stream):
            return await self._duplicate(stream, digest, response_type)
        domain_callback = _domain_callback(callback, confirmed=confirmed)

        def record(status: TradeStatus, refund: bool) -> StreamAppend:  # noqa: FBT001
            reply = response_type(
                trade_id=callback.trade_id, trade_status=_STATUS[status], refund_required=refund
            )
            rpc = type(request).__name__.removesuffix("Request")
            recorded = Request(request.request_id, rpc, digest)
            return recorded_reply(
                stream,
                principal.principal_id,
                recorded,
                reply.SerializeToString(deterministic=True),
            )

        for _ in range(limits.trade_step_attempts_max):
            loaded = await self._processes.load(callback.trade_id)
            trade = trade_model.check_callback(loaded.trade if loaded else None, domain_callback)
            assert loaded is not None
            happened = process.CallbackReceived(domain_callback)
            step = process.decide(trade, happened, self._processes.now())
            if isinstance(step, process.Cancel) and step.decide_again:
                # Paid too late by the server clock: cancelled first, then decided again.
                with contextlib.suppress(TradeConflict):
                    await self._processes.execute(loaded, step)
                continue
            status, refund = process.reply_of(step)
            try:
                position = await self._processes.execute(loaded, step, (record(status, refund),))
            except TradeConflict:
                continue
            except WrongExpectedVersion as conflict:
                if conflict.stream_id != stream:
                    raise
                return await self._duplicate(stream, digest, response_type)
            return response_type(
                position=position_message(position),
                trade_id=trade.trade_id,
                trade_status=_STATUS[status],
                refund_required=refund,
            )
        raise errors.Aborted(
            errors.CONCURRENT_MODIFICATION,
            "the trade kept changing; retry",
            trade_id=callback.trade_id,
        )

    async def _duplicate(
        self, stream: str, digest: bytes, response_type: type[Response]
    ) -> Response:
        recorded = await self._store.read_stream(stream, 1, 1)
        assert recorded, stream
        original = codec.decode(recorded[0])
        assert isinstance(original, CommandRecorded)
        if original.payload_sha256 != digest:
            raise errors.AlreadyExists(
                errors.PROVIDER_EVENT_ID_REUSED,
                "this provider_event_id was delivered with other fields",
                field="callback.provider_event_id",
            )
        response = response_type.FromString(original.response)
        response.position.CopyFrom(position_message(recorded[0].position))
        response.duplicate = True
        return response


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
