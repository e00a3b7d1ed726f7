"""The trade and its process, pure: every state against every input, and the callback checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointex.server.domain import errors
from pointex.server.domain import trade as trade_model
from pointex.server.domain.market_events import (
    PaymentConfirmed,
    PaymentFailed,
    PaymentRequested,
    RefundRequired,
    TradeCancelled,
    TradeEvent,
    TradeMatched,
)
from pointex.server.domain.processes import trade as process
from pointex.server.domain.trade import Callback, Trade, TradeStatus
from pointex.server.domain.values import (
    FeeSchedule,
    Instant,
    Market,
    Money,
    OrderSide,
    Span,
    TradeCancelReason,
)

MARKET = Market(
    "PTS-CNY", "CNY", FeeSchedule(100, 1), FeeSchedule(50, 0), Span(60_000), 10**6, 10**9, "p", True
)
CREATED_AT = Instant(1_000_000)
BEFORE = Instant(CREATED_AT.unix_ms + 1_000)  # Within the payment window.
AFTER = Instant(CREATED_AT.unix_ms + 60_000)  # The deadline itself: past it.


def _created() -> Trade:
    match = TradeMatched(
        "t1", "PTS-CNY", "b1", "s1", "buyer", "seller", OrderSide.SELL, 4, 125, 0, 6
    )
    return trade_model.evolve(None, trade_model.created_from(match, MARKET, CREATED_AT))


def _callback(
    *,
    confirmed: bool,
    event_id: str = "e1",
    provider_id: str = "p",
    payment_id: str = "pay-1",
    amount: Money | None = None,
) -> Callback:
    amount = amount or _created().amount_due
    return Callback(provider_id, payment_id, "t1", confirmed, amount, event_id, BEFORE, "k1")


def _apply(trade: Trade, events: tuple[TradeEvent, ...] | list[TradeEvent]) -> Trade:
    for event in events:
        trade = trade_model.evolve(trade, event)
    return trade


def _with_payment(trade: Trade) -> Trade:
    requested = PaymentRequested(
        "t1", "p", "pay-1", "https://pay/1", trade.amount_due, trade.created.payment_deadline
    )
    return trade_model.evolve(trade, requested)


def _states() -> dict[str, Trade]:
    pending = _created()
    asked = _with_payment(pending)
    settling = trade_model.evolve(
        asked, trade_model.confirmation(asked, _callback(confirmed=True), late=False)
    )
    cancelled = trade_model.evolve(asked, TradeCancelled("t1", TradeCancelReason.PAYMENT_FAILED))
    return {
        "pending": pending,
        "asked": asked,
        "settling": settling,
        "settled": trade_model.evolve(settling, trade_model.settled(settling)),
        "cancelled": cancelled,
        "flagged": _apply(
            cancelled, trade_model.late_confirmation(cancelled, _callback(confirmed=True))
        ),
    }


INPUTS: dict[str, process.Happened] = {
    "resumed": process.Resumed(),
    "created": process.PaymentCreated("p", "pay-1", "https://pay/1"),
    "refused": process.PaymentRefused("UNKNOWN_PROVIDER"),
    "deadline": process.DeadlineReached(),
    "confirmed": process.CallbackReceived(_callback(confirmed=True)),
    "failed": process.CallbackReceived(_callback(confirmed=False)),
}

# (state, input) -> the step, before the deadline and past it; a string names the step type,
# and for Cancel the reason and whether the input is decided again.
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("pending", "resumed"): ("RequestPayment", "Cancel PAYMENT_DEADLINE_PASSED"),
    ("pending", "created"): ("RecordEvents", "RecordEvents"),
    ("pending", "refused"): ("Cancel PAYMENT_REQUEST_FAILED", "Cancel PAYMENT_REQUEST_FAILED"),
    ("pending", "deadline"): ("Nothing", "Cancel PAYMENT_DEADLINE_PASSED"),
    ("pending", "confirmed"): ("CollectFromSeller", "Cancel PAYMENT_DEADLINE_PASSED again"),
    ("pending", "failed"): ("Cancel PAYMENT_FAILED", "Cancel PAYMENT_FAILED"),
    ("asked", "resumed"): ("Nothing", "Cancel PAYMENT_DEADLINE_PASSED"),
    ("asked", "created"): ("Nothing", "Nothing"),
    ("asked", "refused"): ("Cancel PAYMENT_REQUEST_FAILED", "Cancel PAYMENT_REQUEST_FAILED"),
    ("asked", "deadline"): ("Nothing", "Cancel PAYMENT_DEADLINE_PASSED"),
    ("asked", "confirmed"): ("CollectFromSeller", "Cancel PAYMENT_DEADLINE_PASSED again"),
    ("asked", "failed"): ("Cancel PAYMENT_FAILED", "Cancel PAYMENT_FAILED"),
    **{("settling", i): ("Nothing", "Nothing") for i in ("created", "refused", "deadline")},
    ("settling", "resumed"): ("DeliverToBuyer", "DeliverToBuyer"),
    ("settling", "confirmed"): ("Acknowledge SETTLED resume", "Acknowledge SETTLED resume"),
    ("settling", "failed"): ("Acknowledge SETTLED resume", "Acknowledge SETTLED resume"),
    **{("settled", i): ("Nothing", "Nothing") for i in ("resumed", "created", "refused")},
    ("settled", "deadline"): ("Nothing", "Nothing"),
    ("settled", "confirmed"): ("Acknowledge SETTLED", "Acknowledge SETTLED"),
    ("settled", "failed"): ("Acknowledge SETTLED", "Acknowledge SETTLED"),
    **{("cancelled", i): ("Nothing", "Nothing") for i in ("resumed", "created", "refused")},
    ("cancelled", "deadline"): ("Nothing", "Nothing"),
    ("cancelled", "confirmed"): ("RecordEvents", "RecordEvents"),
    ("cancelled", "failed"): ("Acknowledge CANCELLED", "Acknowledge CANCELLED"),
    **{("flagged", i): ("Nothing", "Nothing") for i in ("resumed", "created", "refused")},
    ("flagged", "deadline"): ("Nothing", "Nothing"),
    ("flagged", "confirmed"): ("Acknowledge CANCELLED refund", "Acknowledge CANCELLED refund"),
    ("flagged", "failed"): ("Acknowledge CANCELLED refund", "Acknowledge CANCELLED refund"),
}


def _name(step: process.Step) -> str:
    match step:
        case process.Cancel():
            cancelled = step.events[-1]
            assert isinstance(cancelled, TradeCancelled)
            return f"Cancel {cancelled.reason.value}" + (" again" if step.decide_again else "")
        case process.Acknowledge():
            words = ["Acknowledge", step.status.value]
            words += ["refund"] if step.refund_required else []
            words += ["resume"] if step.resume else []
            return " ".join(words)
    return type(step).__name__


def test_the_table_covers_every_state_and_every_input() -> None:
    """A new state or input without a row fails here, before it can go undecided."""
    assert set(EXPECTED) == {(s, i) for s in _states() for i in INPUTS}


@pytest.mark.parametrize(("state", "happened"), sorted(EXPECTED))
@pytest.mark.parametrize("late", [False, True], ids=["in-time", "past-deadline"])
def test_every_state_and_input_decide_the_expected_step(
    state: str, happened: str, *, late: bool
) -> None:
    """Each pair decides one step, before the payment deadline and past it."""
    step = process.decide(_states()[state], INPUTS[happened], AFTER if late else BEFORE)
    assert _name(step) == EXPECTED[state, happened][late]


@pytest.mark.parametrize(("state", "happened"), sorted(EXPECTED))
def test_every_decided_step_applies_to_the_trade(state: str, happened: str) -> None:
    """The events a step records are ones the trade accepts in its state (evolve asserts)."""
    trade = _states()[state]
    for now in (BEFORE, AFTER):
        step = process.decide(trade, INPUTS[happened], now)
        match step:
            case process.RecordEvents() | process.Cancel():
                _apply(trade, step.events)
            case process.CollectFromSeller():
                assert _apply(trade, [step.confirmed]).status is TradeStatus.SETTLING
            case process.DeliverToBuyer():
                assert _apply(trade, [step.settled]).status is TradeStatus.SETTLED


def test_a_callback_reply_names_the_status_after_its_step() -> None:
    """A callback's reply reports where its step leaves the trade, and the refund flag."""
    states = _states()
    confirmed, failed = INPUTS["confirmed"], INPUTS["failed"]
    assert process.reply_of(process.decide(states["asked"], confirmed, BEFORE)) == (
        TradeStatus.SETTLED,
        False,
    )
    assert process.reply_of(process.decide(states["asked"], failed, BEFORE)) == (
        TradeStatus.CANCELLED,
        False,
    )
    late = process.decide(states["cancelled"], confirmed, BEFORE)
    assert process.reply_of(late) == (TradeStatus.CANCELLED, True)
    with pytest.raises(AssertionError):
        process.reply_of(process.decide(states["asked"], confirmed, AFTER))


def test_a_late_confirmation_flags_a_refund_once() -> None:
    """The first confirmation of a cancelled trade records a refund; the next one nothing."""
    cancelled = _states()["cancelled"]
    late = trade_model.late_confirmation(cancelled, _callback(confirmed=True))
    assert [type(event) for event in late] == [PaymentConfirmed, RefundRequired]
    flagged = _apply(cancelled, late)
    assert flagged.refund_required
    assert trade_model.late_confirmation(flagged, _callback(confirmed=True, event_id="e2")) == []


def test_a_match_creates_a_trade_with_the_markets_fees_and_deadline() -> None:
    """4 points at 125: the buyer pays 1% + 1 on top, the seller gives up 0.5%, rounded up."""
    created = _created().created
    assert created.notional_minor == 500
    assert (created.buyer_fee_minor, created.seller_fee_minor) == (6, 3)
    assert (created.amount_due_minor, created.seller_proceeds_minor) == (506, 497)
    assert created.payment_deadline == AFTER


@pytest.mark.parametrize(
    ("callback", "reason"),
    [
        (_callback(confirmed=True, payment_id="pay-2"), errors.TRADE_MISMATCH),
        (_callback(confirmed=True, provider_id="other"), errors.TRADE_MISMATCH),
        (_callback(confirmed=True, amount=Money(506, "USD")), errors.CURRENCY_MISMATCH),
        (_callback(confirmed=True, amount=Money(505, "CNY")), errors.AMOUNT_MISMATCH),
    ],
)
def test_a_callback_that_does_not_match_the_trade_is_refused(
    callback: Callback, reason: str
) -> None:
    """Another payment, currency or amount than the trade's: a named refusal."""
    with pytest.raises(errors.DomainError) as refused:
        trade_model.check_callback(_states()["asked"], callback)
    assert refused.value.reason == reason


def test_a_callback_before_the_payment_or_for_no_trade_is_not_found() -> None:
    """No trade: TRADE_NOT_FOUND; a trade whose payment is not recorded: PAYMENT_NOT_FOUND."""
    with pytest.raises(errors.NotFound) as no_trade:
        trade_model.check_callback(None, _callback(confirmed=True))
    assert no_trade.value.reason == errors.TRADE_NOT_FOUND
    with pytest.raises(errors.NotFound) as no_payment:
        trade_model.check_callback(_states()["pending"], _callback(confirmed=True))
    assert no_payment.value.reason == errors.PAYMENT_NOT_FOUND


def test_a_failure_records_the_callback_and_changes_no_state() -> None:
    """PaymentFailed is a record; the cancellation in the same unit is what ends the trade."""
    asked = _states()["asked"]
    failed = trade_model.failure(asked, _callback(confirmed=False))
    assert isinstance(failed, PaymentFailed)
    assert trade_model.evolve(asked, failed).status is TradeStatus.PENDING_PAYMENT


def _drive(trade: Trade, happened: process.Happened, now: Instant) -> Trade:
    """Carry out the steps `happened` leads to, as the runner does; return the trade after."""
    for _ in range(3):  # A step that decides again, or one that resumes delivery.
        step = process.decide(trade, happened, now)
        match step:
            case process.RecordEvents() | process.Cancel():
                trade = _apply(trade, step.events)
            case process.CollectFromSeller():
                trade = _apply(trade, [step.confirmed])
            case process.DeliverToBuyer():
                trade = _apply(trade, [step.settled])
        if isinstance(step, process.Acknowledge) and step.resume:
            happened = process.Resumed()
        elif not (isinstance(step, process.Cancel) and step.decide_again):
            break
    return trade


@given(st.lists(st.sampled_from(sorted(INPUTS)), max_size=12), st.booleans())
def test_any_sequence_of_inputs_ends_settled_or_cancelled_at_most_once(
    names: list[str], late: bool
) -> None:
    """Driving a trade by its own decisions never breaks it, and an ended trade stays ended."""
    trade = _created()
    now = AFTER if late else BEFORE
    ended: TradeStatus | None = None
    for name in [*names, "resumed", "resumed"]:
        trade = _drive(trade, INPUTS[name], now)
        if ended is not None:
            assert trade.status is ended, "an ended trade never changes status"
        if trade.status in {TradeStatus.SETTLED, TradeStatus.CANCELLED}:
            ended = trade.status
    if late or {"confirmed", "failed", "refused"} & set(names):
        assert trade.status in {TradeStatus.SETTLED, TradeStatus.CANCELLED}
