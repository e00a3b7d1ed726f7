"""The trade process: PENDING_PAYMENT -> SETTLING -> SETTLED, or -> CANCELLED.

`decide(trade, happened, now)` returns the next step; the runner commits its trade events
at the trade stream's expected version in one unit with the account or market step that
goes with them, so two drivers racing on one trade cannot both win (the loser decides
again on the trade as it now is).

  happened            PENDING_PAYMENT                      SETTLING        SETTLED / CANCELLED
  Resumed             RequestPayment | Cancel (deadline)   DeliverToBuyer  Nothing
                      | Nothing (payment asked)
  PaymentCreated      RecordEvents (PaymentRequested)      Nothing         Nothing
  PaymentRefused      Cancel (request failed)              Nothing         Nothing
  DeadlineReached     Cancel (deadline) if past it         Nothing         Nothing
  confirmation        CollectFromSeller | Cancel first     Acknowledge     Acknowledge | late:
                      (past the deadline), then again      + resume        RecordEvents (refund)
  failure             Cancel (payment failed)              Acknowledge     Acknowledge

A settled trade may be refunded within the program's cooling-off window (REFUNDING, then
REFUNDED, or SETTLED again when the provider declines):

  happened            SETTLED                REFUNDING                REFUNDED
  RefundAsked         TakeBackFromBuyer      Nothing (the same ask)   Nothing (the same ask)
  Resumed             Nothing                RequestRefund            Nothing
  RefundMade          Nothing                ReturnToSeller           Nothing
  RefundRefused       Nothing                RestoreToBuyer           Nothing

A RefundAsked of another refund id than the one under way or made is refused
(PURCHASE_NOT_REFUNDABLE); the buyer's account refuses one outside its window or spent.

A Cancel is followed by the buyer's release (`buyer_release`): the trade's quantity stops
counting as being bought by the buyer's account. It moves no points and is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from pointex.server.domain import errors
from pointex.server.domain import trade as trade_model
from pointex.server.domain.commands import ReleaseBuy
from pointex.server.domain.market_events import (
    PaymentConfirmed,
    PaymentRequested,
    RefundDeclined,
    RefundRequested,
    TradeCancelled,
    TradeCreated,
    TradeEvent,
    TradeRefunded,
    TradeSettled,
)
from pointex.server.domain.trade import Callback, Trade, TradeStatus
from pointex.server.domain.values import Caller, Instant, TradeCancelReason

# --- What happened ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resumed:
    """The trade was created, or the server restarted: do what is due now."""


@dataclass(frozen=True, slots=True)
class PaymentCreated:
    """The provider answered the payment request with a payment."""

    provider_id: str
    payment_id: str
    checkout_url: str


@dataclass(frozen=True, slots=True)
class PaymentRefused:
    """The provider refused to create the payment (for good, not a retryable outage)."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeadlineReached:
    """The payment deadline's timer fired."""


@dataclass(frozen=True, slots=True)
class CallbackReceived:
    """A verified payment callback, already matched to the trade (check_callback)."""

    callback: Callback


@dataclass(frozen=True, slots=True)
class RefundAsked:
    """The buyer (or the operator) asked for the trade's refund (RefundPurchase)."""

    refund_id: str
    caller: Caller


@dataclass(frozen=True, slots=True)
class RefundMade:
    """The provider gave the payment back."""

    provider_refund_id: str


@dataclass(frozen=True, slots=True)
class RefundRefused:
    """The provider refused the refund for good."""

    reason: str


Happened = (
    Resumed
    | PaymentCreated
    | PaymentRefused
    | DeadlineReached
    | CallbackReceived
    | RefundAsked
    | RefundMade
    | RefundRefused
)

# --- The next step ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nothing:
    """Nothing is due: the trade waits for a callback or its deadline, or it has ended."""


@dataclass(frozen=True, slots=True)
class RequestPayment:
    """Ask the market's payment provider for the trade's payment."""


@dataclass(frozen=True, slots=True)
class RecordEvents:
    """Record trade events that move no points (a payment request, a late confirmation)."""

    events: tuple[TradeEvent, ...]


@dataclass(frozen=True, slots=True)
class CollectFromSeller:
    """Record the confirmation with the seller's delivery (held -> sold); then deliver."""

    confirmed: PaymentConfirmed


@dataclass(frozen=True, slots=True)
class DeliverToBuyer:
    """Credit the buyer and record the trade settled."""

    settled: TradeSettled


@dataclass(frozen=True, slots=True)
class Cancel:
    """End the trade: its quantity back to the resting SELL order, else to the seller.

    `decide_again`: the input is still to be applied to the cancelled trade (a confirmation
    that arrived after the deadline is cancelled first, then recorded as late).
    """

    events: tuple[TradeEvent, ...]
    decide_again: bool = False


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Change nothing: the callback is only recorded. `resume`: delivery is still due."""

    status: TradeStatus
    refund_required: bool
    resume: bool = False


@dataclass(frozen=True, slots=True)
class TakeBackFromBuyer:
    """Take the purchase's points back from the buyer, recording the refund requested."""

    requested: RefundRequested
    caller: Caller


@dataclass(frozen=True, slots=True)
class RequestRefund:
    """Ask the market's payment provider to give the buyer's payment back."""


@dataclass(frozen=True, slots=True)
class ReturnToSeller:
    """Give the points back to the seller, recording the trade refunded."""

    refunded: TradeRefunded


@dataclass(frozen=True, slots=True)
class RestoreToBuyer:
    """Give the points back to the buyer, recording the refund declined."""

    declined: RefundDeclined


Step = (
    Nothing
    | RequestPayment
    | RecordEvents
    | CollectFromSeller
    | DeliverToBuyer
    | Cancel
    | Acknowledge
    | TakeBackFromBuyer
    | RequestRefund
    | ReturnToSeller
    | RestoreToBuyer
)


def decide(trade: Trade, happened: Happened, now: Instant) -> Step:
    """Return the next step of `trade` after `happened`, at the server's time `now`."""
    if isinstance(happened, RefundAsked | RefundMade | RefundRefused) or (
        trade.status is TradeStatus.REFUNDING and isinstance(happened, Resumed)
    ):
        return _refund(trade, happened)
    if isinstance(happened, CallbackReceived):
        if trade.status is TradeStatus.PENDING_PAYMENT:
            return _callback_while_pending(trade, happened.callback, now)
        return _callback_after_pending(trade, happened.callback)
    if trade.status is TradeStatus.SETTLING:
        return (
            DeliverToBuyer(trade_model.settled(trade))
            if isinstance(happened, Resumed)
            else Nothing()
        )
    if trade.status is TradeStatus.PENDING_PAYMENT:
        return _while_pending(trade, happened, now)
    return Nothing()


def _while_pending(
    trade: Trade,
    happened: Resumed | PaymentCreated | PaymentRefused | DeadlineReached,
    now: Instant,
) -> Step:
    due = trade.past_deadline(now)
    match happened:
        case Resumed():
            if due:
                return _cancel(trade, TradeCancelReason.PAYMENT_DEADLINE_PASSED)
            return RequestPayment() if trade.payment is None else Nothing()
        case PaymentCreated():
            # Recorded by an earlier attempt when there is a payment already.
            return (
                RecordEvents((_requested(trade, happened),)) if trade.payment is None else Nothing()
            )
        case PaymentRefused():
            return _cancel(trade, TradeCancelReason.PAYMENT_REQUEST_FAILED)
        case DeadlineReached():
            # A timer that fired early by this clock cancels nothing.
            return _cancel(trade, TradeCancelReason.PAYMENT_DEADLINE_PASSED) if due else Nothing()


def _callback_while_pending(trade: Trade, callback: Callback, now: Instant) -> Step:
    if not callback.confirmed:
        failed = trade_model.failure(trade, callback)
        return Cancel((failed, TradeCancelled(trade.trade_id, TradeCancelReason.PAYMENT_FAILED)))
    if trade.past_deadline(now):
        # Paid too late by the server clock: cancel first, then record it as late.
        deadline = TradeCancelled(trade.trade_id, TradeCancelReason.PAYMENT_DEADLINE_PASSED)
        return Cancel((deadline,), decide_again=True)
    return CollectFromSeller(trade_model.confirmation(trade, callback, late=False))


def _callback_after_pending(trade: Trade, callback: Callback) -> Step:
    if trade.status is not TradeStatus.CANCELLED:
        # Settling, settled or refunded: nothing to change; a settling trade's delivery is
        # still due.
        settling = trade.status is TradeStatus.SETTLING
        status = trade.status if trade.refund is not None else TradeStatus.SETTLED
        return Acknowledge(status, trade.refund_required, resume=settling)
    late = trade_model.late_confirmation(trade, callback) if callback.confirmed else []
    if late:
        return RecordEvents(tuple(late))
    # A failure, or a confirmation whose refund is flagged already.
    return Acknowledge(TradeStatus.CANCELLED, trade.refund_required or callback.confirmed)


def _refund(trade: Trade, happened: RefundAsked | RefundMade | RefundRefused | Resumed) -> Step:
    """Return the step of a cooling-off refund (see the table above)."""
    refund = trade.refund
    if isinstance(happened, RefundAsked):
        asked = happened.refund_id
        if trade.status is TradeStatus.SETTLED and not (
            trade.declined is not None and trade.declined.refund_id == asked
        ):
            requested = RefundRequested(trade.trade_id, asked, trade.amount_due)
            return TakeBackFromBuyer(requested, happened.caller)
        declined = trade.declined
        if (refund is not None and refund.refund_id == asked) or (
            trade.status is TradeStatus.SETTLED
            and declined is not None
            and declined.refund_id == asked
        ):
            return Nothing()  # This refund, under way, made or declined: answered as it is.
        raise errors.FailedPrecondition(
            errors.PURCHASE_NOT_REFUNDABLE,
            f"a {trade.status.value.lower()} trade cannot be refunded",
            trade_id=trade.trade_id,
            trade_status=trade.status.value,
        )
    if trade.status is not TradeStatus.REFUNDING:
        return Nothing()
    assert refund is not None, trade
    if isinstance(happened, Resumed):
        return RequestRefund()
    if isinstance(happened, RefundMade):
        return ReturnToSeller(
            TradeRefunded(trade.trade_id, refund.refund_id, happened.provider_refund_id)
        )
    return RestoreToBuyer(RefundDeclined(trade.trade_id, refund.refund_id, happened.reason))


def _cancel(trade: Trade, reason: TradeCancelReason) -> Cancel:
    return Cancel((TradeCancelled(trade.trade_id, reason),))


def _requested(trade: Trade, created: PaymentCreated) -> PaymentRequested:
    return PaymentRequested(
        trade.trade_id,
        created.provider_id,
        created.payment_id,
        created.checkout_url,
        trade.amount_due,
        trade.created.payment_deadline,
    )


def reply_of(step: Step) -> tuple[TradeStatus, bool]:
    """Return what a callback that led to `step` reports: the trade's status, and the refund flag.

    Only steps a callback decides have a reply (a Cancel that decides again has none).
    """
    match step:
        case CollectFromSeller():
            return TradeStatus.SETTLED, False
        case Cancel(decide_again=False):
            return TradeStatus.CANCELLED, False
        case RecordEvents():
            return TradeStatus.CANCELLED, True  # A late confirmation: refund flagged.
        case Acknowledge():
            return step.status, step.refund_required
    raise AssertionError(f"a callback does not lead to {step}")


def buyer_release(created: TradeCreated) -> ReleaseBuy:
    """Return the buyer's release that follows a trade's cancellation."""
    return ReleaseBuy(
        created.buyer_account_id, created.buy_order_id, created.trade_id, created.quantity_points
    )
