"""The placement process, pure: every stage against every input, and stages from the log."""

from __future__ import annotations

import pytest

from pointex.server.domain.commands import HoldPoints, ReleaseBuy, ReleasePoints, ReserveBuy
from pointex.server.domain.events import BuyReleased, BuyReserved, PointsHeld, PointsReleased
from pointex.server.domain.market_commands import PlaceOrder, RejectOrder
from pointex.server.domain.market_events import OrderCancelled, OrderPlaced, OrderRejected
from pointex.server.domain.processes import placement as process
from pointex.server.domain.values import (
    Caller,
    OrderCancelReason,
    OrderSide,
    Role,
    TimeInForce,
)

ACME = Caller(Role.PARTNER, "acme")
SELL = PlaceOrder("ord-1", "acme:s", "PTS-CNY", OrderSide.SELL, 30, 125, TimeInForce.GTC, "c1")
BUY = PlaceOrder("ord-2", "acme:b", "PTS-CNY", OrderSide.BUY, 30, 125, TimeInForce.IOC, "")
HELD = PointsHeld("acme:s", "ord-1", "PTS-CNY", 30, 125, TimeInForce.GTC, "c1", 70, 30)
RESERVED = BuyReserved("acme:b", "ord-2", "PTS-CNY", 30, 125, TimeInForce.IOC, "", 30)
ORDERS = {"sell": SELL, "buy": BUY}


def _stages() -> dict[str, process.Placement]:
    return {
        f"{name}-{stage}": placement
        for name, order in ORDERS.items()
        for stage, placement in (
            ("held", process.held(order)),
            ("release_due", process.placed(order, 12)),
            ("done", process.placed(order, 0)),
        )
    }


INPUTS: dict[str, process.Happened] = {
    "resumed": process.Resumed(),
    "refused": process.Refused("MARKET_CLOSED"),
}
EXPECTED = {
    ("sell-held", "resumed"): process.Place(SELL),
    ("sell-held", "refused"): process.Reject(RejectOrder(SELL, "MARKET_CLOSED")),
    ("sell-release_due", "resumed"): process.Release(ReleasePoints("acme:s", "ord-1", "", 12)),
    ("sell-release_due", "refused"): process.Release(ReleasePoints("acme:s", "ord-1", "", 12)),
    ("sell-done", "resumed"): process.Done(),
    ("sell-done", "refused"): process.Done(),
    ("buy-held", "resumed"): process.Place(BUY),
    ("buy-held", "refused"): process.Reject(RejectOrder(BUY, "MARKET_CLOSED")),
    ("buy-release_due", "resumed"): process.Release(ReleaseBuy("acme:b", "ord-2", "", 12)),
    ("buy-release_due", "refused"): process.Release(ReleaseBuy("acme:b", "ord-2", "", 12)),
    ("buy-done", "resumed"): process.Done(),
    ("buy-done", "refused"): process.Done(),
}


def test_the_table_covers_every_stage_and_every_input() -> None:
    """A new stage, side or input without a row fails here."""
    assert set(EXPECTED) == {(s, i) for s in _stages() for i in INPUTS}
    assert {(p.stage, p.side) for p in _stages().values()} == {
        (stage, side) for stage in process.Stage for side in OrderSide
    }


@pytest.mark.parametrize(("stage", "happened"), sorted(EXPECTED))
def test_every_stage_and_input_decide_the_expected_step(stage: str, happened: str) -> None:
    """Each pair decides one step, with the command it carries."""
    assert process.decide(_stages()[stage], INPUTS[happened]) == EXPECTED[stage, happened]


def test_a_sell_order_starts_by_holding_its_points_with_its_terms() -> None:
    """The hold carries the order's terms, so recovery can place the order from it."""
    first = process.start(ACME, SELL)
    assert first == process.Hold(
        HoldPoints(ACME, "acme:s", "ord-1", "PTS-CNY", 30, 125, TimeInForce.GTC, "c1")
    )


def test_a_buy_order_starts_by_reserving_its_quantity_with_its_terms() -> None:
    """A BUY moves no points, but its account counts it as buying first: it cannot close."""
    assert process.start(ACME, BUY) == process.Hold(
        ReserveBuy(ACME, "acme:b", "ord-2", "PTS-CNY", 30, 125, TimeInForce.IOC, "")
    )


def test_a_rejected_held_order_releases_all_it_held() -> None:
    """The market refused the held order: every held point goes back."""
    step = process.decide(process.rejected(SELL), process.Resumed())
    assert step == process.Release(ReleasePoints("acme:s", "ord-1", "", 30))


def test_the_log_tells_each_stage_of_a_sell_order() -> None:
    """Held, placed, cancelled while resting, released: the stages recovery reads back."""
    held = process.evolve(None, HELD)
    assert (held.stage, held.order) == (process.Stage.HELD, SELL)
    placed = process.evolve(
        held,
        OrderPlaced(
            "ord-1", "PTS-CNY", "acme:s", OrderSide.SELL, 30, 125, "CNY", TimeInForce.GTC, "c1"
        ),
    )
    assert placed.stage is process.Stage.DONE
    cancelled = OrderCancelled(
        "ord-1", "PTS-CNY", "acme:s", OrderSide.SELL, OrderCancelReason.REQUESTED, 18
    )
    due = process.evolve(placed, cancelled)
    assert (due.stage, due.release_points) == (process.Stage.RELEASE_DUE, 18)
    released = process.evolve(due, PointsReleased("acme:s", "ord-1", "", 18, 88, 0))
    assert released.stage is process.Stage.DONE


def test_a_rejection_or_a_cancellation_seen_first_still_releases() -> None:
    """The scan starts at a checkpoint: an order known only by its end is still released."""
    rejected = process.evolve(
        None, OrderRejected("ord-1", "PTS-CNY", "acme:s", OrderSide.SELL, 30, "MARKET_CLOSED")
    )
    assert process.decide(rejected, process.Resumed()) == process.Release(
        ReleasePoints("acme:s", "ord-1", "", 30)
    )


def test_the_log_tells_each_stage_of_a_buy_order() -> None:
    """Reserved, placed, its IOC remainder cancelled, released: as for a SELL, on BuyReleased."""
    reserved = process.evolve(None, RESERVED)
    assert (reserved.stage, reserved.order) == (process.Stage.HELD, BUY)
    placed = process.evolve(
        reserved,
        OrderPlaced(
            "ord-2", "PTS-CNY", "acme:b", OrderSide.BUY, 30, 125, "CNY", TimeInForce.IOC, ""
        ),
    )
    assert placed.stage is process.Stage.DONE
    cancelled = OrderCancelled(
        "ord-2", "PTS-CNY", "acme:b", OrderSide.BUY, OrderCancelReason.IOC_REMAINDER, 30
    )
    due = process.evolve(placed, cancelled)
    assert process.decide(due, process.Resumed()) == process.Release(
        ReleaseBuy("acme:b", "ord-2", "", 30)
    )
    released = process.evolve(due, BuyReleased("acme:b", "ord-2", "", 30, 0))
    assert released.stage is process.Stage.DONE


def test_a_cancelled_resting_order_releases_what_was_open() -> None:
    """CancelOrder's step: the open quantity, released as the order's side has it."""
    for side, release in ((OrderSide.SELL, ReleasePoints), (OrderSide.BUY, ReleaseBuy)):
        cancelled = process.cancelled("ord-3", "acme:x", side, 7)
        step = process.decide(cancelled, process.Resumed())
        assert step == process.Release(release("acme:x", "ord-3", "", 7))


def test_a_trades_release_is_not_the_placements() -> None:
    """A release caused by a cancelled trade belongs to the trade process (evolve asserts)."""
    with pytest.raises(AssertionError):
        process.evolve(process.held(SELL), PointsReleased("acme:s", "ord-1", "t1", 5, 75, 25))
    with pytest.raises(AssertionError):
        process.evolve(process.held(BUY), BuyReleased("acme:b", "ord-2", "t1", 5, 25))
