"""Cooling-off: a market purchase refunded within its window if none of its points is spent.

The buyer's account keeps each purchase made under a cooling-off window; it gives the points
back for a refund only inside the window and while no point has left the account since. The
trade process takes the points from the buyer, asks the provider, and gives the points to the
seller or back to the buyer.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pointex.server.domain import errors, lots
from pointex.server.domain.account import Account, decide, evolve
from pointex.server.domain.commands import (
    AccountCommand,
    BuyPoints,
    DebitPoints,
    FreezeAccount,
    HoldPoints,
    OpenAccount,
    RestoreBought,
    ReturnBought,
    ReturnSold,
)
from pointex.server.domain.events import BoughtPointsReturned, PointsBought
from pointex.server.domain.lots import Lot
from pointex.server.domain.market_events import (
    PaymentRequested,
    RefundDeclined,
    RefundRequested,
    TradeCreated,
    TradeRefunded,
)
from pointex.server.domain.processes import trade as process
from pointex.server.domain.program import LimitIndex, Program, ProgramRules
from pointex.server.domain.trade import Trade, TradeStatus
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    Caller,
    Instant,
    Money,
    OrderSide,
    Role,
    Span,
    TimeInForce,
    TransferKind,
)

ACME = Caller(Role.PARTNER, "acme")
OTHER = Caller(Role.PARTNER, "other")
DAY = 86_400_000
T0 = 1_767_225_600_000
LOT = Lot(Instant(T0 - DAY), Instant(T0 + 30 * DAY), 40)


def window(ms: int) -> LimitIndex:
    """The rules in force with a cooling-off window of `ms`."""
    return LimitIndex(Program(1, ProgramRules(cooling_off=Span(ms))))


def apply(state: Account | None, command: AccountCommand, at: int = T0) -> Account:
    """Decide `command` at `at` (a seven-day window in force) and evolve through its events."""
    for event in decide(state, command, window(7 * DAY), at):
        state = evolve(state, event)
    assert state is not None
    return state


def bought(points: int = 40, trade_id: str = "tr1") -> Account:
    """A member of acme who bought `points` (in LOT) on the market at T0."""
    member = apply(None, OpenAccount(ACME, "u1", AccountKind.MEMBER, "acme", ""))
    return apply(member, BuyPoints("u1", trade_id, "o1", points, (LOT,)))


def refusal(state: Account, command: AccountCommand, at: int = T0 + 1) -> errors.DomainError:
    """Return the DomainError `command` meets."""
    with pytest.raises(errors.DomainError) as refused:
        decide(state, command, window(7 * DAY), at)
    return refused.value


def test_a_purchase_under_a_window_is_refundable_until_its_end() -> None:
    """PointsBought states the window's end; the account keeps the purchase and its lots."""
    state = bought()
    (purchase,) = state.purchases
    assert purchase.refundable_until == Instant(T0 + 7 * DAY)
    assert (purchase.amount_points, purchase.lots, purchase.spent) == (40, (LOT,), False)
    member = apply(None, OpenAccount(ACME, "u2", AccountKind.MEMBER, "acme", ""))
    (plain,) = decide(member, BuyPoints("u2", "tr2", "o2", 5), window(0), T0)
    assert isinstance(plain, PointsBought)
    assert plain.refundable_until.unix_ms == 0


def test_a_refund_in_the_window_takes_exactly_the_purchase_back() -> None:
    """The points leave in the lots they came in; the purchase is no longer kept."""
    state = bought()
    (event,) = decide(state, ReturnBought(ACME, "u1", "tr1"), window(0), T0 + 7 * DAY)
    assert event == BoughtPointsReturned("u1", "tr1", 40, 0, (LOT,))
    after = evolve(state, event)
    assert (after.available_points, after.lots, after.purchases) == (0, (), ())


def test_a_refund_after_the_window_is_refused_naming_its_end() -> None:
    """COOLING_OFF_ENDED, with when it ended."""
    error = refusal(bought(), ReturnBought(ACME, "u1", "tr1"), at=T0 + 7 * DAY + 1)
    assert error.reason == errors.COOLING_OFF_ENDED
    assert error.metadata["refundable_until"] == "2026-01-08T00:00:00Z"


@pytest.mark.parametrize(
    "spend",
    [
        DebitPoints(ACME, "u1", "t1", TransferKind.TRANSFER, "u2", 1, ""),
        HoldPoints(ACME, "u1", "o9", "PTS-CNY", 1, 100, TimeInForce.GTC, ""),
    ],
    ids=["transfer", "sell-order"],
)
def test_a_point_leaving_the_account_spends_the_purchase(spend: AccountCommand) -> None:
    """After a transfer or a SELL order's hold: PURCHASE_POINTS_SPENT, even for one point."""
    state = apply(bought(), spend, T0 + 1)
    assert state.purchases[0].spent
    error = refusal(state, ReturnBought(ACME, "u1", "tr1"))
    assert error.reason == errors.PURCHASE_POINTS_SPENT


def test_what_cannot_be_refunded_is_refused_by_name() -> None:
    """Another trade, another partner's member, a frozen account."""
    state = bought()
    unknown = refusal(state, ReturnBought(ACME, "u1", "tr-other"))
    assert unknown.reason == errors.PURCHASE_NOT_REFUNDABLE
    assert refusal(state, ReturnBought(OTHER, "u1", "tr1")).reason == errors.NOT_OWNER
    frozen = apply(state, FreezeAccount(OPERATOR, "u1", "fraud"))
    assert refusal(frozen, ReturnBought(ACME, "u1", "tr1")).reason == errors.ACCOUNT_FROZEN


def test_the_seller_takes_the_points_back_and_a_declined_refund_restores_the_buyer() -> None:
    """The seller's points come back in their lots; a declined refund is not refundable again."""
    seller = apply(None, OpenAccount(ACME, "s1", AccountKind.MEMBER, "acme", ""))
    seller = apply(seller, ReturnSold("s1", "tr1", 40, (LOT,)))
    assert (seller.available_points, seller.lots) == (40, (LOT,))
    buyer = apply(bought(), ReturnBought(ACME, "u1", "tr1"), T0 + 1)
    buyer = apply(buyer, RestoreBought("u1", "tr1", 40, (LOT,)), T0 + 2)
    assert (buyer.available_points, buyer.lots, buyer.purchases) == (40, (LOT,), ())


# --- The trade process ------------------------------------------------------------------------

_CNY = Money(4_041, "CNY")
_CREATED = TradeCreated(
    "tr1", "PTS-CNY", "o-b", "o-s", "u1", "s1", OrderSide.SELL, 40, 100, "CNY", 4_000, 41, 40,
    4_041, 3_960, Instant(T0 + 60_000),
)  # fmt: skip
_PAID = PaymentRequested("tr1", "sandbox", "pay-1", "https://pay", _CNY, _CREATED.payment_deadline)


def settled(**changes: object) -> Trade:
    """A settled trade of 40 points to u1, its payment requested from the sandbox."""
    trade = Trade(_CREATED, TradeStatus.SETTLED, 5, payment=_PAID, delivered_lots=(LOT,))
    return replace(trade, **changes)  # type: ignore[arg-type]


def test_the_refund_steps_follow_the_table() -> None:
    """Asked, asked again, made, refused; another refund of a refunded trade is refused."""
    now = Instant(T0)
    ask = process.RefundAsked("r1", ACME)
    take = process.decide(settled(), ask, now)
    requested = RefundRequested("tr1", "r1", _CNY)
    assert take == process.TakeBackFromBuyer(requested, ACME)
    refunding = settled(status=TradeStatus.REFUNDING, refund=requested)
    assert process.decide(refunding, process.Resumed(), now) == process.RequestRefund()
    assert process.decide(refunding, ask, now) == process.Nothing()
    made = process.decide(refunding, process.RefundMade("rfd-1"), now)
    assert made == process.ReturnToSeller(TradeRefunded("tr1", "r1", "rfd-1"))
    refused = process.decide(refunding, process.RefundRefused("NOPE"), now)
    assert refused == process.RestoreToBuyer(RefundDeclined("tr1", "r1", "NOPE"))
    refunded = settled(status=TradeStatus.REFUNDED, refund=requested)
    assert process.decide(refunded, process.Resumed(), now) == process.Nothing()
    with pytest.raises(errors.FailedPrecondition) as again:
        process.decide(refunded, process.RefundAsked("r2", ACME), now)
    assert again.value.reason == errors.PURCHASE_NOT_REFUNDABLE
    assert again.value.metadata["trade_status"] == "REFUNDED"
    declined = settled(declined=RefundDeclined("tr1", "r1", "NOPE"))
    assert process.decide(declined, ask, now) == process.Nothing()  # Answered as it stands.
    assert isinstance(process.decide(declined, process.RefundAsked("r2", ACME), now),
                      process.TakeBackFromBuyer)  # fmt: skip
    again_refunding = settled(
        status=TradeStatus.REFUNDING,
        refund=RefundRequested("tr1", "r2", _CNY),
        declined=RefundDeclined("tr1", "r1", "NOPE"),
    )
    with pytest.raises(errors.FailedPrecondition):  # A third ask, while the second is under way.
        process.decide(again_refunding, process.RefundAsked("r3", ACME), now)
    cancelled = settled(status=TradeStatus.CANCELLED)
    with pytest.raises(errors.FailedPrecondition):
        process.decide(cancelled, ask, now)


def test_a_refunded_purchase_whose_lot_was_merged_still_takes_all_its_points() -> None:
    """Lots merged by the account's bound: what is missing leaves from the newest lots."""
    merged = Lot(Instant(T0 - DAY), Instant(T0 + 40 * DAY), 70)
    older = Lot(Instant(T0 - 2 * DAY), Instant(T0 + 20 * DAY), 10)
    left = lots.remove((older, merged), (LOT,))
    assert left == (older, Lot(merged.earned_at, merged.expires_at, 30))
    assert lots.remove((older,), (LOT,)) == ()  # Nothing left to take the rest from.
