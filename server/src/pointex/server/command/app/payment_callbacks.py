"""ConfirmPayment and FailPayment: apply a verified provider callback to its trade.

The edge (command/edge/callbacks.py) checks the caller's binding to the provider, the
fields, the signature and the signed_at window (payments/verification.py) first; here
come deduplication on the provider event id, then the match with the trade
(domain/trade.py), then the step the trade process decides. Every rejection records
nothing. A callback is applied by the owner of the trade's market, which drives the trade:
with the slice ranges split across servers, it is placed there.

Every accepted callback is recorded on a stream keyed by (provider, provider event id),
with the change it causes if any (a failure after settlement, or a second late
confirmation, changes nothing but is still recorded): a redelivery of that event,
re-signed at another time, finds the record and gets the original reply, marked
`duplicate`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pointex.server import limits
from pointex.server.command.app.idempotency import Request, recorded_reply
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.runner import pause_after_conflict
from pointex.server.command.app.trade_processes import TradeConflict, TradeProcesses
from pointex.server.domain import errors, streams
from pointex.server.domain import trade as trade_model
from pointex.server.domain.events import CommandRecorded
from pointex.server.domain.processes import trade as process
from pointex.server.domain.trade import TradeStatus
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, StreamAppend, WrongExpectedVersion

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class VerifiedCallback:
    """A callback the edge verified, as the application layer needs it.

    Attributes:
        request: its request id, its operation and the digest of the fields a redelivery
            must repeat (not the signing time, signature or key id).
        event_key: the key of its record stream, from the provider and its event id.
        callback: the domain's view of it.
    """

    request: Request
    event_key: str
    callback: trade_model.Callback


class CallbackReplies(Protocol[R]):
    """How the edge builds, encodes and decodes a callback's reply."""

    def reply(self, trade_id: str, status: TradeStatus, *, refund_required: bool) -> R:
        """Return the reply for a callback that left the trade in `status`."""
        ...

    def encode(self, reply: R) -> bytes:
        """Return the bytes recorded for `reply`."""
        ...

    def at(self, reply: R, position: int) -> R:
        """Return `reply` with the position of its last event set."""
        ...

    def duplicate(self, data: bytes, position: int) -> R:
        """Return the recorded reply `data`, marked as the answer to a redelivery."""
        ...


class PaymentCallbacks:
    """Apply verified payment callbacks to trades."""

    def __init__(
        self, *, store: EventStore, lookup: RecordLookup, processes: TradeProcesses
    ) -> None:
        """Drive the callbacks' trades through `processes`; `lookup` spots redeliveries."""
        self._store = store
        self._lookup = lookup
        self._processes = processes

    def now_unix_s(self) -> int:
        """Return the server's time in Unix seconds (for the signing window)."""
        return self._processes.now().unix_ms // 1000

    async def apply(
        self, principal_id: str, verified: VerifiedCallback, replies: CallbackReplies[R]
    ) -> R:
        """Apply one callback; return the reply (the original one for a redelivery)."""
        stream = streams.request(verified.event_key)
        digest = verified.request.digest
        if await self._lookup.exists(stream):
            return await self._duplicate(stream, digest, replies)
        callback = verified.callback

        def record(status: TradeStatus, refund: bool) -> StreamAppend:  # noqa: FBT001
            reply = replies.reply(callback.trade_id, status, refund_required=refund)
            return recorded_reply(stream, principal_id, verified.request, replies.encode(reply))

        for attempt in range(limits.trade_step_attempts_max):
            loaded = await self._processes.load(callback.trade_id)
            trade = trade_model.check_callback(loaded.trade if loaded else None, callback)
            assert loaded is not None
            self._processes.require_driver(trade)  # Else the call goes to the market's owner.
            happened = process.CallbackReceived(callback)
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
                await pause_after_conflict(attempt)
                continue
            except WrongExpectedVersion as conflict:
                if conflict.stream_id != stream:
                    raise
                return await self._duplicate(stream, digest, replies)
            reply = replies.reply(trade.trade_id, status, refund_required=refund)
            return replies.at(reply, position)
        raise errors.Aborted(
            errors.CONCURRENT_MODIFICATION,
            "the trade kept changing; retry",
            trade_id=callback.trade_id,
        )

    async def _duplicate(self, stream: str, digest: bytes, replies: CallbackReplies[R]) -> R:
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
        return replies.duplicate(original.response, recorded[0].position)
