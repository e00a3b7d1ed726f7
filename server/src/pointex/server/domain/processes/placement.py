"""The placement process: a SELL order's points are held, then placed, and what is unused released.

A SELL order moves points on two streams: the seller's account holds them (PointsHeld,
which carries the order's terms), then the market places and matches the order
(OrderPlaced, its matches and trades). Points the order will not use go back to available
(PointsReleased): all of them when the market rejects the held order (OrderRejected), the
unmatched remainder of an IOC order, or of any SELL order cancelled while resting. A BUY
order holds nothing: its placement is the market step alone.

  stage        input       step
  (new)        start       Hold (SELL) | Place (BUY)
  HELD         Resumed     Place (the market step is due)
  HELD         Refused     Reject (then the rejection's release is due)
  RELEASE_DUE  any         Release
  DONE         any         Done

The stage of an order is rebuilt from those events (`evolve`), which is how the recovery
scan finds held orders not yet placed and releases not yet made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pointex.server.domain.commands import HoldPoints, ReleasePoints
from pointex.server.domain.events import PointsHeld, PointsReleased
from pointex.server.domain.market_commands import PlaceOrder, RejectOrder
from pointex.server.domain.market_events import OrderCancelled, OrderPlaced, OrderRejected
from pointex.server.domain.values import Caller, OrderSide

PlacementEvent = PointsHeld | OrderPlaced | OrderRejected | OrderCancelled | PointsReleased


class Stage(enum.Enum):
    """Where an order's held points are."""

    HELD = "HELD"  # Held for a SELL order that is not placed yet: the market step is due.
    RELEASE_DUE = "RELEASE_DUE"  # Held for quantity the order will not use: release it.
    DONE = "DONE"  # Placed (what is held is the resting quantity), or released.


@dataclass(frozen=True, slots=True)
class Placement:
    """An order's placement, as its account and market events tell it."""

    order_id: str
    account_id: str
    stage: Stage
    order: PlaceOrder | None = None  # The terms, known from the hold: what HELD places.
    release_points: int = 0  # What is due back to available, at RELEASE_DUE.


def evolve(placement: Placement | None, event: PlacementEvent) -> Placement:
    """Return the placement after `event`.

    The first event seen may be a later one: the recovery scan starts at a checkpoint, and
    an order resting from before it is known only from its cancellation.
    """
    order = placement.order if placement else None
    match event:
        case PointsHeld():
            return Placement(event.order_id, event.account_id, Stage.HELD, _order_of(event))
        case OrderRejected(side=OrderSide.SELL):
            stage, release = Stage.RELEASE_DUE, event.quantity_points
        case OrderCancelled(side=OrderSide.SELL):
            stage, release = Stage.RELEASE_DUE, event.cancelled_quantity_points
        case PointsReleased():
            assert not event.trade_id, "a trade's release belongs to the trade process"
            stage, release = Stage.DONE, 0
        case _:  # Placed, or a BUY order's end: nothing is held for it.
            stage, release = Stage.DONE, 0
    return Placement(event.order_id, event.account_id, stage, order, release)


# --- What happened, and the next step -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resumed:
    """Do what is due now (right after the hold, or after a restart)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The market refused the held order (closed since the check, a limit...)."""

    reason: str


Happened = Resumed | Refused


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold a SELL order's points on its account (the first step)."""

    command: HoldPoints


@dataclass(frozen=True, slots=True)
class Place:
    """Place and match the order on its market."""

    command: PlaceOrder


@dataclass(frozen=True, slots=True)
class Reject:
    """Record that the held order cannot enter the book; its release is due next."""

    command: RejectOrder


@dataclass(frozen=True, slots=True)
class Release:
    """Return points the order will not use to the account's available balance."""

    command: ReleasePoints


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing is due."""


Step = Hold | Place | Reject | Release | Done


def start(caller: Caller, order: PlaceOrder) -> Hold | Place:
    """Return the first step of a new order: hold a SELL's points, or place a BUY at once."""
    if order.side is OrderSide.BUY:
        return Place(order)
    return Hold(
        HoldPoints(
            caller,
            order.account_id,
            order.order_id,
            order.market_id,
            order.quantity_points,
            order.limit_price_minor,
            order.time_in_force,
            order.client_order_id,
        )
    )


def decide(placement: Placement, happened: Happened) -> Step:
    """Return the next step of `placement` after `happened`."""
    match placement.stage:
        case Stage.HELD:
            order = placement.order
            assert order is not None, "a hold carries the order's terms"
            if isinstance(happened, Refused):
                return Reject(RejectOrder(order, happened.reason))
            return Place(order)
        case Stage.RELEASE_DUE:
            release = ReleasePoints(
                placement.account_id, placement.order_id, "", placement.release_points
            )
            return Release(release)
        case Stage.DONE:
            return Done()


def placed(order: PlaceOrder, sell_remainder_points: int) -> Placement:
    """Return the placement once its market step committed, with any IOC SELL remainder."""
    stage = Stage.RELEASE_DUE if sell_remainder_points else Stage.DONE
    return Placement(order.order_id, order.account_id, stage, order, sell_remainder_points)


def rejected(order: PlaceOrder) -> Placement:
    """Return the placement of a held SELL order the market rejected: all of it is released."""
    return Placement(
        order.order_id, order.account_id, Stage.RELEASE_DUE, order, order.quantity_points
    )


def held(order: PlaceOrder) -> Placement:
    """Return the placement of a SELL order whose points are held (the market step is due)."""
    return Placement(order.order_id, order.account_id, Stage.HELD, order)


def _order_of(held: PointsHeld) -> PlaceOrder:
    return PlaceOrder(
        held.order_id,
        held.account_id,
        held.market_id,
        OrderSide.SELL,
        held.amount_points,
        held.limit_price_minor,
        held.time_in_force,
        held.client_order_id,
    )
