"""The sandbox gateway's state: payments, when they settle, and the delivery of callbacks.

A payment is created at once and settles later, after the configured delay, with an
outcome drawn from the configured failure rate (or at once through SettlePayment). Its
callback then goes through one bounded queue to a fixed set of delivery workers, which
redeliver after retryable errors with a capped exponential backoff, stop on a final answer,
and can deliver a deliberate duplicate to exercise the command server's deduplication.

A confirmed payment can be refunded, in one or more parts, never beyond its amount. A refund
is made at once (synchronously) and is idempotent on the caller's refund_id.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import grpc

from pointex.server import limits
from pointex.server.payments.sandbox.refunds import (
    REFUNDS_PER_PAYMENT_MAX,
    REFUSAL_CODES,
    Refund,
    Refusal,
)

log = logging.getLogger(__name__)

# The gateway's bounds are in limits.py, section "Sandbox payment provider"; the refunds per
# payment are bounded in refunds.py.

# All of a share in basis points (100 %): failure and duplicate rates are drawn against it.
BPS_ALL: Final = 10_000
# Codes after which the same callback may succeed later: the command server is restarting,
# overloaded or racing (PAYMENT_NOT_FOUND: the payment request is not recorded yet).
RETRYABLE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.NOT_FOUND,
    }
)


class Outcome(enum.Enum):
    """How a payment ended for the buyer."""

    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


class Delivery(enum.Enum):
    """Where a payment's callback stands."""

    PENDING = "PENDING"
    DELIVERING = "DELIVERING"
    DELIVERED = "DELIVERED"
    REJECTED = "REJECTED"
    ABANDONED = "ABANDONED"


class GatewayError(Exception):
    """A request the gateway refuses; `code` is the gRPC status it answers with.

    A refused refund also names its `refusal`, with `metadata` for the caller.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        refusal: Refusal | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Record the status code, the message and, for a refund, why it is refused."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.refusal = refusal
        self.metadata = dict(metadata or {})

    @classmethod
    def refund_refused(
        cls, refusal: Refusal, message: str, metadata: Mapping[str, str] | None = None
    ) -> GatewayError:
        """Return the error refusing a refund for `refusal`, with its status code."""
        return cls(REFUSAL_CODES[refusal], message, refusal, metadata)


@dataclass(slots=True)
class Payment:
    """One payment and the delivery of its callback."""

    payment_id: str
    trade_id: str
    amount_minor: int
    currency: str
    buyer_account_id: str
    checkout_url: str
    outcome: Outcome | None = None
    provider_event_id: str = ""
    delivery: Delivery = Delivery.PENDING
    attempts: int = 0
    duplicates_sent: int = 0
    last_error: str = ""
    timer: asyncio.TimerHandle | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # By refund_id, oldest first; at most REFUNDS_PER_PAYMENT_MAX.
    refunds: dict[str, Refund] = field(default_factory=dict)
    refunded_minor: int = 0


class CallbackSender(Protocol):
    """Sends one signed callback to the command server."""

    async def send(self, payment: Payment, *, request_id: str) -> grpc.StatusCode:
        """Deliver the payment's callback once; return the call's status code."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the gateway behaves: delay, failure rate and duplicate rate."""

    delay_ms: int
    failure_rate_bps: int
    duplicate_rate_bps: int
    checkout_base_url: str = "https://sandbox.pointex.invalid/checkout/"


def _draw_bps() -> int:
    return secrets.randbelow(BPS_ALL)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Gateway:
    """Payments by id and by trade, their timers, and the delivery workers."""

    def __init__(
        self,
        behaviour: Behaviour,
        sender: CallbackSender,
        draw_bps: Callable[[], int] = _draw_bps,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        """Hold no payment yet; call `start` from the event loop before serving."""
        self._behaviour = behaviour
        self._sender = sender
        self._draw_bps = draw_bps
        self._clock_ms = clock_ms
        self._payments: OrderedDict[str, Payment] = OrderedDict()
        self._by_trade: dict[str, str] = {}
        # refund_id -> payment_id, so that a refund_id names one refund across all payments.
        # Bounded by the payments held times REFUNDS_PER_PAYMENT_MAX.
        self._refund_payments: dict[str, str] = {}
        self._queue: asyncio.Queue[Payment] = asyncio.Queue(
            maxsize=limits.sandbox_deliveries_queued_max
        )
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the delivery workers."""
        assert not self._workers, "started twice"
        self._workers = [
            asyncio.create_task(self._work(), name=f"sandbox-delivery-{n}")
            for n in range(limits.sandbox_delivery_workers_max)
        ]

    def create(
        self, trade_id: str, amount_minor: int, currency: str, buyer_account_id: str
    ) -> tuple[Payment, bool]:
        """Return the trade's payment, creating it if needed, and whether it was created."""
        existing = self._by_trade.get(trade_id)
        if existing is not None:
            payment = self._payments[existing]
            same = (payment.amount_minor, payment.currency, payment.buyer_account_id)
            if same != (amount_minor, currency, buyer_account_id):
                raise GatewayError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "the trade already has a payment with other details",
                )
            return payment, False
        self._make_room()
        payment_id = f"pay_{secrets.token_hex(12)}"
        payment = Payment(
            payment_id=payment_id,
            trade_id=trade_id,
            amount_minor=amount_minor,
            currency=currency,
            buyer_account_id=buyer_account_id,
            checkout_url=self._behaviour.checkout_base_url + payment_id,
        )
        self._payments[payment_id] = payment
        self._by_trade[trade_id] = payment_id
        payment.timer = asyncio.get_running_loop().call_later(
            self._behaviour.delay_ms / 1000, self._settle_on_time, payment
        )
        return payment, True

    def get(self, payment_id: str) -> Payment:
        """Return the payment or raise GatewayError(NOT_FOUND)."""
        payment = self._payments.get(payment_id)
        if payment is None:
            raise GatewayError(grpc.StatusCode.NOT_FOUND, "no such payment")
        return payment

    def settle(self, payment_id: str, outcome: Outcome) -> Payment:
        """Settle the payment now with `outcome`; settling again the same way changes nothing."""
        payment = self.get(payment_id)
        if payment.outcome is None:
            self._settle(payment, outcome)
        elif payment.outcome is not outcome:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the payment already settled as {payment.outcome.value}",
            )
        return payment

    def refund(
        self, refund_id: str, payment_id: str, amount_minor: int, currency: str
    ) -> tuple[Refund, Payment, bool]:
        """Refund part or all of a confirmed payment; return the refund, its payment, created.

        A refund_id already used with the same terms returns its refund again (created
        False), whatever the payment's state now; with other terms it is refused.
        """
        assert amount_minor > 0, amount_minor
        owner = self._refund_payments.get(refund_id)
        if owner is not None:
            refunded = self._payments[owner]
            refund = refunded.refunds[refund_id]
            terms = (payment_id, amount_minor, currency)
            if (refund.payment_id, refund.amount_minor, refund.currency) != terms:
                raise GatewayError.refund_refused(
                    Refusal.REFUND_ID_REUSED,
                    "the refund_id names a refund of another payment, amount or currency",
                )
            return refund, refunded, False
        payment = self._payments.get(payment_id)
        if payment is None:
            raise GatewayError.refund_refused(Refusal.PAYMENT_NOT_FOUND, "no such payment")
        _check_refundable(payment, amount_minor, currency)
        refund = Refund(
            refund_id=refund_id,
            provider_refund_id=f"rfd_{secrets.token_hex(12)}",
            payment_id=payment_id,
            amount_minor=amount_minor,
            currency=currency,
            refunded_at_ms=self._clock_ms(),
        )
        payment.refunds[refund_id] = refund
        payment.refunded_minor += amount_minor
        self._refund_payments[refund_id] = payment_id
        return refund, payment, True

    async def drain(self, timeout_s: float) -> None:
        """Stop settling, deliver what is queued within `timeout_s`, then stop the workers."""
        unsettled = [p for p in self._payments.values() if p.timer is not None]
        for payment in unsettled:
            assert payment.timer is not None
            payment.timer.cancel()
            payment.timer = None
        if unsettled:
            # The sandbox keeps payments in memory only: these will never call back.
            log.warning("payments left unsettled at shutdown", extra={"count": len(unsettled)})
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            log.warning("callbacks left undelivered", extra={"count": self._queue.qsize()})
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self._sender.close()

    def _make_room(self) -> None:
        if len(self._payments) < limits.sandbox_payments_max:
            return
        finished = next((p for p in self._payments.values() if p.finished.is_set()), None)
        if finished is None:
            raise GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too many payments in progress; retry later"
            )
        del self._payments[finished.payment_id]
        del self._by_trade[finished.trade_id]
        # Its refunds go with it: a retry of one is then refused PAYMENT_NOT_FOUND, as after
        # a restart, and the refund_id may name another refund.
        for refund_id in finished.refunds:
            del self._refund_payments[refund_id]

    def _settle_on_time(self, payment: Payment) -> None:
        payment.timer = None
        failed = self._draw_bps() < self._behaviour.failure_rate_bps
        self._settle(payment, Outcome.FAILED if failed else Outcome.CONFIRMED)

    def _settle(self, payment: Payment, outcome: Outcome) -> None:
        if payment.timer is not None:
            payment.timer.cancel()
            payment.timer = None
        payment.outcome = outcome
        # One event id per settlement: every redelivery and duplicate carries it.
        payment.provider_event_id = f"evt_{secrets.token_hex(12)}"
        payment.delivery = Delivery.DELIVERING
        # Each payment is queued once and the queue is as large as the table: never full.
        self._queue.put_nowait(payment)

    async def _work(self) -> None:
        while True:
            payment = await self._queue.get()
            try:
                await self._deliver(payment)
                if payment.delivery is Delivery.DELIVERED:
                    await self._maybe_duplicate(payment)
            except Exception:
                # A bug in one delivery must not stop the worker that serves the others.
                log.exception("delivery failed", extra={"payment_id": payment.payment_id})
                payment.delivery = Delivery.ABANDONED
            finally:
                payment.finished.set()
                self._queue.task_done()

    async def _deliver(self, payment: Payment) -> None:
        backoff_ms = limits.sandbox_delivery_backoff_ms_min
        for _ in range(limits.sandbox_delivery_attempts_max):
            payment.attempts += 1
            code = await self._sender.send(payment, request_id=payment.provider_event_id)
            if code is grpc.StatusCode.OK:
                payment.delivery = Delivery.DELIVERED
                return
            payment.last_error = code.name
            if code not in RETRYABLE_CODES:
                payment.delivery = Delivery.REJECTED
                log.warning(
                    "callback rejected",
                    extra={"payment_id": payment.payment_id, "code": code.name},
                )
                return
            await asyncio.sleep(backoff_ms / 1000)
            backoff_ms = min(2 * backoff_ms, limits.sandbox_delivery_backoff_ms_max)
        payment.delivery = Delivery.ABANDONED
        log.warning("callback abandoned", extra={"payment_id": payment.payment_id})

    async def _maybe_duplicate(self, payment: Payment) -> None:
        if self._draw_bps() >= self._behaviour.duplicate_rate_bps:
            return
        # Another request id, so that the command server's deduplication on provider_event_id
        # is what recognises the duplicate, not its request_id idempotency.
        payment.duplicates_sent += 1
        payment.attempts += 1
        request_id = f"{payment.provider_event_id}.dup{payment.duplicates_sent}"
        code = await self._sender.send(payment, request_id=request_id)
        if code is not grpc.StatusCode.OK:
            payment.last_error = code.name


def _check_refundable(payment: Payment, amount_minor: int, currency: str) -> None:
    """Raise GatewayError unless `payment` can give back `amount_minor` more of `currency`."""
    if payment.outcome is not Outcome.CONFIRMED:
        state = "not settled" if payment.outcome is None else payment.outcome.value
        raise GatewayError.refund_refused(
            Refusal.PAYMENT_NOT_CONFIRMED, f"only a confirmed payment is refunded; it is {state}"
        )
    if currency != payment.currency:
        raise GatewayError.refund_refused(
            Refusal.CURRENCY_MISMATCH, f"the payment is in {payment.currency}"
        )
    if len(payment.refunds) >= REFUNDS_PER_PAYMENT_MAX:
        raise GatewayError.refund_refused(
            Refusal.TOO_MANY_REFUNDS,
            f"a payment has at most {REFUNDS_PER_PAYMENT_MAX} refunds",
            {"limit": str(REFUNDS_PER_PAYMENT_MAX)},
        )
    refundable_minor = payment.amount_minor - payment.refunded_minor
    if amount_minor > refundable_minor:
        raise GatewayError.refund_refused(
            Refusal.REFUND_EXCEEDS_PAYMENT,
            f"{refundable_minor} of {payment.amount_minor} is left to refund",
            {"refundable_minor": str(refundable_minor)},
        )
