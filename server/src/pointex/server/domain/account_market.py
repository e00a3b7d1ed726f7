"""The account's steps of the market: holds for SELL orders, BUY reservations, settlement.

Deciders of the account aggregate (dispatched by `domain/account.py`) for the steps the
order placement and trade processes ask of an account.
"""

from __future__ import annotations

import datetime as dt

from pointex.server.domain import errors, lots
from pointex.server.domain.account_state import (
    Account,
    Purchase,
    require_amount,
    require_available,
    require_exists,
    require_may_act,
    require_not_frozen,
    require_open,
)
from pointex.server.domain.commands import (
    BuyPoints,
    HoldPoints,
    ReleaseBuy,
    ReleasePoints,
    ReserveBuy,
    RestoreBought,
    ReturnBought,
    ReturnSold,
    SellPoints,
)
from pointex.server.domain.events import (
    NEVER,
    AccountEvent,
    BoughtPointsRestored,
    BoughtPointsReturned,
    BuyReleased,
    BuyReserved,
    PointsBought,
    PointsHeld,
    PointsReleased,
    PointsSold,
    SoldPointsReturned,
)
from pointex.server.domain.program import LimitIndex
from pointex.server.domain.values import Instant


def hold(state: Account | None, command: HoldPoints) -> list[AccountEvent]:
    """Escrow a SELL order's quantity: available -> held."""
    require_amount(command.amount_points)
    account = require_open(state, command.account_id)
    require_may_act(command.caller, account)
    require_not_frozen(account)
    require_available(account, command.amount_points)
    return [
        PointsHeld(
            command.account_id,
            command.order_id,
            command.market_id,
            command.amount_points,
            command.limit_price_minor,
            command.time_in_force,
            command.client_order_id,
            account.available_points - command.amount_points,
            account.held_points + command.amount_points,
            command.fee_quote,
        )
    ]


def require_still_held(account: Account, amount_points: int, trade_id: str) -> None:
    """Refuse a trade's step whose points are no longer held: the trade changed meanwhile.

    Two drivers of one trade (a confirmation and a failure delivered at once) each decide
    on the trade as they read it; the one that commits second finds the held points gone
    before its commit meets the version conflict on the trade stream. It reads the trade
    again and decides afresh (the trade processes turn this refusal into that retry).
    """
    if account.held_points < amount_points:
        raise errors.Aborted(
            errors.CONCURRENT_MODIFICATION,
            "the trade changed meanwhile: its points are no longer held",
            account_id=account.account_id,
            trade_id=trade_id,
        )


def release(state: Account | None, command: ReleasePoints) -> list[AccountEvent]:
    """Give held points back to available (an order or a trade of it was cancelled)."""
    # Like a return, a release gives back what the account escrowed itself: never refused,
    # not for a frozen account. The held points are there: I2 says they were escrowed.
    account = require_exists(state, command.account_id)
    if command.trade_id:
        require_still_held(account, command.amount_points, command.trade_id)
    if account.held_points < command.amount_points:
        # The held points are there once every step already decided has committed: the state
        # counts a step still in flight (a racing driver's sale that will not commit). Asked
        # again after it, the release goes through.
        raise errors.Aborted(
            errors.CONCURRENT_MODIFICATION,
            "a step of this account is still committing; retry the release",
            account_id=account.account_id,
            order_id=command.order_id,
        )
    return [
        PointsReleased(
            command.account_id,
            command.order_id,
            command.trade_id,
            command.amount_points,
            account.available_points + command.amount_points,
            account.held_points - command.amount_points,
        )
    ]


def sell(state: Account | None, command: SellPoints, at: Instant) -> list[AccountEvent]:
    """Deliver a settled trade's quantity from held points."""
    # The seller delivers from escrow: a paid trade's quantity is never refused.
    account = require_exists(state, command.account_id)
    require_still_held(account, command.amount_points, command.trade_id)
    taken = lots.NO_LOTS
    if account.lots:  # The points sold keep their expiry: the buyer gets these lots.
        total = account.available_points + account.held_points
        taken, _ = lots.take(account.lots, total, command.amount_points)
    return [
        PointsSold(
            command.account_id,
            command.trade_id,
            command.order_id,
            command.amount_points,
            account.held_points - command.amount_points,
            at,
            taken,
        )
    ]


def buy(
    state: Account | None, command: BuyPoints, at: Instant, rules: LimitIndex
) -> list[AccountEvent]:
    """Receive a settled trade's quantity, refundable for the cooling-off window in force."""
    # The buyer paid: only a closed account (which may hold nothing) cannot receive.
    account = require_open(state, command.account_id)
    window = rules.cooling_off.ms
    return [
        PointsBought(
            command.account_id,
            command.trade_id,
            command.order_id,
            command.amount_points,
            account.available_points + command.amount_points,
            at,
            account.keeps(command.lots),
            Instant(at.unix_ms + window) if window else NEVER,
        )
    ]


def reserve_buy(state: Account | None, command: ReserveBuy) -> list[AccountEvent]:
    """Count a BUY order's quantity as being bought, so the account stays open."""
    require_amount(command.quantity_points)
    account = require_open(state, command.account_id)
    require_may_act(command.caller, account)
    return [
        BuyReserved(
            command.account_id,
            command.order_id,
            command.market_id,
            command.quantity_points,
            command.limit_price_minor,
            command.time_in_force,
            command.client_order_id,
            account.buying_points + command.quantity_points,
            command.fee_quote,
        )
    ]


def release_buy(state: Account | None, command: ReleaseBuy) -> list[AccountEvent]:
    """Stop counting what a BUY order will not buy."""
    # Never refused, like a release of held points. A BUY order opened before orders were
    # reserved counted nothing: it releases no more than the account is buying (then 0),
    # and still records the release, which ends the step for recovery.
    account = require_exists(state, command.account_id)
    released = min(command.quantity_points, account.buying_points)
    return [
        BuyReleased(
            command.account_id,
            command.order_id,
            command.trade_id,
            released,
            account.buying_points - released,
        )
    ]


# --- Cooling-off: a purchase refunded ------------------------------------------------------


def purchase_of(account: Account, trade_id: str) -> Purchase | None:
    """Return the account's refundable purchase of `trade_id`, if it keeps one."""
    return next((p for p in account.purchases if p.trade_id == trade_id), None)


def return_bought(state: Account | None, command: ReturnBought, at: Instant) -> list[AccountEvent]:
    """Give a purchase's points back for its refund, if its window is open and none is spent."""
    account = require_open(state, command.account_id)
    require_may_act(command.caller, account)
    purchase = purchase_of(account, command.trade_id)
    context = {"account_id": account.account_id, "trade_id": command.trade_id}
    if purchase is None:
        raise errors.FailedPrecondition(
            errors.PURCHASE_NOT_REFUNDABLE,
            "the account keeps no refundable purchase of this trade",
            trade_status="SETTLED",
            **context,
        )
    if purchase.spent:
        raise errors.FailedPrecondition(
            errors.PURCHASE_POINTS_SPENT,
            "points left the account since the purchase; it is no longer refundable",
            **context,
        )
    if at.unix_ms > purchase.refundable_until.unix_ms:
        until = purchase.refundable_until.unix_ms
        raise errors.FailedPrecondition(
            errors.COOLING_OFF_ENDED,
            "the purchase's cooling-off window has ended",
            refundable_until=_rfc3339(until),
            **context,
        )
    require_not_frozen(account)
    return [
        BoughtPointsReturned(
            account.account_id,
            command.trade_id,
            purchase.amount_points,
            account.available_points - purchase.amount_points,
            purchase.lots,
        )
    ]


def _rfc3339(unix_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_ms // 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def return_sold(state: Account | None, command: ReturnSold) -> list[AccountEvent]:
    """Take a refunded sale's points back; only a closed account cannot."""
    return _points_back(SoldPointsReturned, require_open(state, command.account_id), command)


def restore_bought(state: Account | None, command: RestoreBought) -> list[AccountEvent]:
    """Give the buyer back a purchase whose refund was declined; never refused."""
    return _points_back(BoughtPointsRestored, require_exists(state, command.account_id), command)


def _points_back(
    event: type[SoldPointsReturned | BoughtPointsRestored],
    account: Account,
    command: ReturnSold | RestoreBought,
) -> list[AccountEvent]:
    """Return the event of a refund's points arriving back at `account`, in their lots."""
    return [
        event(
            account.account_id,
            command.trade_id,
            command.amount_points,
            account.available_points + command.amount_points,
            account.keeps(command.lots),
        )
    ]
