"""The placement process: an order is held on its account, then placed, and what is unused released.

An order takes two streams: first its account (the account step), then the market, which
places and matches it (OrderPlaced, its matches and trades). A SELL order's account holds
its points (PointsHeld); a BUY order's account reserves its quantity (BuyReserved: no
points move, but an account that is buying cannot close). Both events carry the order's
terms. What the order will not use is released on its account (PointsReleased for a SELL,
BuyReleased for a BUY): all of it when the market rejects the held order (OrderRejected),
the unmatched remainder of an IOC order, or what is open when a resting order is
cancelled. A trade's own quantity is the trade process's (settled or released with it).

  stage        input       step
  (new)        start       Hold (HoldPoints for a SELL, ReserveBuy for a BUY)
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

from pointex.server.domain.commands import HoldPoints, ReleaseBuy, ReleasePoints, ReserveBuy
from pointex.server.domain.events import BuyReleased, BuyReserved, PointsHeld, PointsReleased
from pointex.server.domain.market_commands import PlaceOrder, RejectOrder
from pointex.server.domain.market_events import OrderCancelled, OrderPlaced, OrderRejected
from pointex.server.domain.values import Caller, OrderSide

PlacementEvent = (
    PointsHeld
    | BuyReserved
    | OrderPlaced
    | OrderRejected
    | OrderCancelled
    | PointsReleased
    | BuyReleased
)


class Stage(enum.Enum):
    """Where an order's account step stands."""

    HELD = "HELD"  # Held on the account, not placed yet: the market step is due.
    RELEASE_DUE = "RELEASE_DUE"  # Held for quantity the order will not use: release it.
    DONE = "DONE"  # Placed (what is held is the resting quantity), or released.


@dataclass(frozen=True, slots=True)
class Placement:
    """An order's placement, as its account and market events tell it."""

    order_id: str
    account_id: str
    side: OrderSide
    stage: Stage
    order: PlaceOrder | None = None  # The terms, known from the hold: what HELD places.
    release_points: int = 0  # What is due to be released, at RELEASE_DUE.


def evolve(placement: Placement | None, event: PlacementEvent) -> Placement:
    """Return the placement after `event`.

    The first event seen may be a later one: the recovery scan starts at a checkpoint, and
    an order resting from before it is known only from its cancellation.
    """
    order = placement.order if placement else None
    side = placement.side if placement else OrderSide.SELL
    match event:
        case PointsHeld() | BuyReserved():
            terms = _order_of(event)
            return Placement(event.order_id, event.account_id, terms.side, Stage.HELD, terms)
        case OrderRejected():
            stage, release, side = Stage.RELEASE_DUE, event.quantity_points, event.side
        case OrderCancelled():
            stage, release, side = Stage.RELEASE_DUE, event.cancelled_quantity_points, event.side
        case PointsReleased() | BuyReleased():
            assert not event.trade_id, "a trade's release belongs to the trade process"
            stage, release = Stage.DONE, 0
        case OrderPlaced():
            stage, release, side = Stage.DONE, 0, event.side
    return Placement(event.order_id, event.account_id, side, stage, order, release)


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
    """The account step (the first): hold a SELL order's points, reserve a BUY order's quantity."""

    command: HoldPoints | ReserveBuy


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
    """Release on the account what the order will not use (held points, or quantity to buy)."""

    command: ReleasePoints | ReleaseBuy


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing is due."""


Step = Hold | Place | Reject | Release | Done


def start(caller: Caller, order: PlaceOrder) -> Hold:
    """Return the first step of a new order: hold a SELL's points, reserve a BUY's quantity."""
    hold = HoldPoints if order.side is OrderSide.SELL else ReserveBuy
    return Hold(
        hold(
            caller,
            order.account_id,
            order.order_id,
            order.market_id,
            order.quantity_points,
            order.limit_price_minor,
            order.time_in_force,
            order.client_order_id,
            order.fee_quote,
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
            release = ReleasePoints if placement.side is OrderSide.SELL else ReleaseBuy
            return Release(
                release(placement.account_id, placement.order_id, "", placement.release_points)
            )
        case Stage.DONE:
            return Done()


def placed(order: PlaceOrder, remainder_points: int) -> Placement:
    """Return the placement once its market step committed, with any IOC remainder."""
    stage = Stage.RELEASE_DUE if remainder_points else Stage.DONE
    return Placement(order.order_id, order.account_id, order.side, stage, order, remainder_points)


def rejected(order: PlaceOrder) -> Placement:
    """Return the placement of a held order the market rejected: all of it is released."""
    return Placement(
        order.order_id,
        order.account_id,
        order.side,
        Stage.RELEASE_DUE,
        order,
        order.quantity_points,
    )


def cancelled(order_id: str, account_id: str, side: OrderSide, points: int) -> Placement:
    """Return the placement of a resting order just cancelled with `points` open."""
    return Placement(order_id, account_id, side, Stage.RELEASE_DUE, None, points)


def held(order: PlaceOrder) -> Placement:
    """Return the placement of an order held on its account (the market step is due)."""
    return Placement(order.order_id, order.account_id, order.side, Stage.HELD, order)


def _order_of(held: PointsHeld | BuyReserved) -> PlaceOrder:
    if isinstance(held, PointsHeld):
        side, quantity = OrderSide.SELL, held.amount_points
    else:
        side, quantity = OrderSide.BUY, held.quantity_points
    return PlaceOrder(
        held.order_id,
        held.account_id,
        held.market_id,
        side,
        quantity,
        held.limit_price_minor,
        held.time_in_force,
        held.client_order_id,
        held.fee_quote,
    )
