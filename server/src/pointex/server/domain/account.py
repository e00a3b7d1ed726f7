"""The account aggregate: `decide(state, command, limits) -> events` and `evolve(state, event)`.

`state` is None until the account is opened. `decide` raises a DomainError (nothing
changes) or returns the events to append; `evolve` applies one committed event and
never fails for an event `decide` produced. Both are pure: the program's limits in force
are an argument of `decide`, checked on a command the account would otherwise accept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.commands import (
    AccountCommand,
    BurnPoints,
    BuyPoints,
    CloseAccount,
    CreditPoints,
    DebitPoints,
    FreezeAccount,
    HoldPoints,
    MintPoints,
    OpenAccount,
    ReleaseBuy,
    ReleasePoints,
    ReserveBuy,
    ReturnPoints,
    SellPoints,
    SetAccountTier,
    UnfreezeAccount,
)
from pointex.server.domain.events import (
    AccountClosed,
    AccountEvent,
    AccountFrozen,
    AccountOpened,
    AccountTierSet,
    AccountUnfrozen,
    BuyReleased,
    BuyReserved,
    PointsBought,
    PointsBurned,
    PointsCredited,
    PointsDebited,
    PointsHeld,
    PointsMinted,
    PointsReleased,
    PointsReturned,
    PointsSold,
)
from pointex.server.domain.program import NO_LIMITS, LimitedOperation, LimitIndex, check_limit
from pointex.server.domain.usage import NO_USAGE, Usage
from pointex.server.domain.values import (
    REVERSED_KINDS,
    TRANSFER_KINDS,
    AccountKind,
    AccountStatus,
    Caller,
    Instant,
    Role,
    TransferKind,
)


@dataclass(frozen=True, slots=True)
class Account:
    """What an account is now: its owner, kind, status and balances.

    `held_points` are escrowed for its SELL orders and trades; `buying_points` are what its
    open BUY orders and BUY trades not yet settled or cancelled will bring. An account with
    either cannot close, so no order rests and no trade ends on a closed account.
    """

    account_id: str
    kind: AccountKind
    owner_partner_id: str
    status: AccountStatus
    available_points: int
    held_points: int
    frozen_by_role: Role | None = None
    buying_points: int = 0
    tier: str = ""  # The member tier a partner set; program limits may name it.
    usage: Usage = NO_USAGE  # What the program's windows count (domain/usage.py).

    def check(self) -> None:
        """Assert the account's own invariants (balances within 0..ceiling)."""
        assert self.available_points >= 0, self
        assert self.held_points >= 0, self
        assert self.buying_points >= 0, self
        closed = self.status is AccountStatus.CLOSED
        assert not closed or self.total_points == self.buying_points == 0, self

    @property
    def total_points(self) -> int:
        """Return available plus held points."""
        return self.available_points + self.held_points


def _require_amount(amount_points: int) -> None:
    if amount_points <= 0:
        raise errors.InvalidArgument(errors.AMOUNT_NOT_POSITIVE, "amount must be positive")
    if amount_points > limits.points_amount_max:
        raise errors.InvalidArgument(
            errors.AMOUNT_TOO_LARGE,
            f"amount exceeds {limits.points_amount_max}",
            limit=str(limits.points_amount_max),
        )


def _require_open(state: Account | None, account_id: str) -> Account:
    account = _require_exists(state, account_id)
    if account.status is AccountStatus.CLOSED:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_CLOSED, "account is closed", account_id=account_id
        )
    return account


def _require_exists(state: Account | None, account_id: str) -> Account:
    if state is None:
        raise errors.NotFound(errors.ACCOUNT_NOT_FOUND, "no such account", account_id=account_id)
    return state


def _require_may_act(caller: Caller, account: Account) -> None:
    if not caller.may_act_for(account.owner_partner_id):
        raise errors.PermissionDenied(
            errors.NOT_OWNER,
            "the account belongs to another partner",
            account_id=account.account_id,
        )


def _require_operator(caller: Caller) -> None:
    if caller.role is not Role.OPERATOR:
        raise errors.PermissionDenied(errors.ROLE_FORBIDDEN, "only an operator may do this")


def _require_kind(account: Account, kind: AccountKind) -> None:
    if account.kind is not kind:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_KIND_MISMATCH,
            f"account is a {account.kind.value}, this needs a {kind.value}",
            account_id=account.account_id,
        )


def _require_not_frozen(account: Account) -> None:
    if account.status is AccountStatus.FROZEN:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_FROZEN, "account is frozen", account_id=account.account_id
        )


def _require_room(account: Account, amount_points: int) -> None:
    if account.total_points + amount_points > limits.points_balance_max:
        raise errors.FailedPrecondition(
            errors.BALANCE_CEILING_EXCEEDED,
            f"balance would exceed {limits.points_balance_max}",
            account_id=account.account_id,
        )


def _require_available(account: Account, amount_points: int, *, taking_back: bool = False) -> None:
    """Refuse a debit of more than is available, naming why.

    INSUFFICIENT_POINTS, or POINTS_ALREADY_SPENT for a reversal taking back points the
    account no longer has.
    """
    if account.available_points >= amount_points:
        return
    if taking_back:
        raise errors.FailedPrecondition(
            errors.POINTS_ALREADY_SPENT,
            "the points to take back are no longer available",
            account_id=account.account_id,
            available_points=str(account.available_points),
            required_points=str(amount_points),
        )
    raise errors.FailedPrecondition(
        errors.INSUFFICIENT_POINTS,
        "not enough available points",
        account_id=account.account_id,
        available_points=str(account.available_points),
    )


def _open(state: Account | None, command: OpenAccount) -> list[AccountEvent]:
    if (
        command.caller.role is Role.PARTNER
        and command.owner_partner_id != command.caller.partner_id
    ):
        raise errors.PermissionDenied(errors.NOT_OWNER, "a partner opens accounts only for itself")
    _require_operator_or_partner(command.caller)
    if state is not None:
        raise errors.AlreadyExists(
            errors.ACCOUNT_ALREADY_EXISTS, "account exists", account_id=command.account_id
        )
    return [
        AccountOpened(
            command.account_id, command.kind, command.owner_partner_id, command.display_name
        )
    ]


def _require_operator_or_partner(caller: Caller) -> None:
    if caller.role not in {Role.OPERATOR, Role.PARTNER}:
        raise errors.PermissionDenied(errors.ROLE_FORBIDDEN, "this role may not manage accounts")


def _mint(state: Account | None, command: MintPoints) -> list[AccountEvent]:
    _require_operator(command.caller)
    _require_amount(command.amount_points)
    account = _require_open(state, command.account_id)
    _require_kind(account, AccountKind.MERCHANT)
    _require_room(account, command.amount_points)
    available = account.available_points + command.amount_points
    return [PointsMinted(command.account_id, command.amount_points, command.memo, available)]


def _burn(state: Account | None, command: BurnPoints) -> list[AccountEvent]:
    _require_operator(command.caller)
    _require_amount(command.amount_points)
    account = _require_open(state, command.account_id)
    _require_kind(account, AccountKind.MERCHANT)
    _require_available(account, command.amount_points)
    available = account.available_points - command.amount_points
    return [PointsBurned(command.account_id, command.amount_points, command.memo, available)]


def _debit(state: Account | None, command: DebitPoints, at: Instant) -> list[AccountEvent]:
    _require_amount(command.amount_points)
    if command.account_id == command.counterparty_account_id:
        raise errors.InvalidArgument(errors.SAME_ACCOUNT, "source and destination are the same")
    account = _require_open(state, command.account_id)
    _require_kind(account, TRANSFER_KINDS[command.kind][0])
    if command.kind in REVERSED_KINDS:
        # A reversal was authorized on its original (the caller owns the merchant), and takes
        # back from a frozen account too: reversing fraud is what a freeze is for.
        _require_available(account, command.amount_points, taking_back=True)
    else:
        _require_may_act(command.caller, account)
        _require_not_frozen(account)
        _require_available(account, command.amount_points)
    return [
        PointsDebited(
            command.account_id,
            command.transfer_id,
            command.kind,
            command.counterparty_account_id,
            command.amount_points,
            command.memo,
            account.available_points - command.amount_points,
            at,
        )
    ]


def check_credit(state: Account | None, command: CreditPoints) -> Account:
    """Raise the DomainError that a credit would meet, else return the account.

    A movement asks this of the destination before it debits the source, so that an
    obviously impossible movement moves nothing; the credit itself checks again.
    """
    account = _require_open(state, command.account_id)
    _require_kind(account, TRANSFER_KINDS[command.kind][1])
    _require_room(account, command.amount_points)
    return account


def _credit(state: Account | None, command: CreditPoints) -> list[AccountEvent]:
    account = check_credit(state, command)
    return [
        PointsCredited(
            command.account_id,
            command.transfer_id,
            command.kind,
            command.counterparty_account_id,
            command.amount_points,
            command.memo,
            account.available_points + command.amount_points,
        )
    ]


def _return(state: Account | None, command: ReturnPoints) -> list[AccountEvent]:
    # A return gives back points this account held a moment ago, so it is never refused:
    # not for a frozen account, and not for the ceiling (the points were within it before
    # the debit). A closed source cannot occur: the account actor refuses CloseAccount
    # while any transfer from the account is in flight (actors/account_actor.py).
    account = _require_exists(state, command.account_id)
    return [
        PointsReturned(
            command.account_id,
            command.transfer_id,
            command.kind,
            command.counterparty_account_id,
            command.amount_points,
            account.available_points + command.amount_points,
        )
    ]


def _freeze(state: Account | None, command: FreezeAccount) -> list[AccountEvent]:
    account = _require_open(state, command.account_id)
    _require_may_act(command.caller, account)
    if account.status is AccountStatus.FROZEN:
        return []  # Already frozen: the contract makes a repeat a no-op, not an error.
    return [AccountFrozen(command.account_id, command.reason, command.caller.role)]


def _unfreeze(state: Account | None, command: UnfreezeAccount) -> list[AccountEvent]:
    account = _require_open(state, command.account_id)
    _require_may_act(command.caller, account)
    if account.status is not AccountStatus.FROZEN:
        return []  # Not frozen: a no-op, like freezing a frozen account.
    if account.frozen_by_role is Role.OPERATOR and command.caller.role is not Role.OPERATOR:
        raise errors.PermissionDenied(
            errors.ROLE_FORBIDDEN, "only an operator lifts an operator's freeze"
        )
    return [AccountUnfrozen(command.account_id, command.reason)]


def _set_tier(state: Account | None, command: SetAccountTier) -> list[AccountEvent]:
    account = _require_open(state, command.account_id)
    _require_may_act(command.caller, account)
    if account.tier == command.tier:
        return []  # The tier it has: a no-op, like freezing a frozen account.
    return [AccountTierSet(command.account_id, command.tier)]


def _close(state: Account | None, command: CloseAccount) -> list[AccountEvent]:
    account = _require_exists(state, command.account_id)
    _require_may_act(command.caller, account)
    if account.status is AccountStatus.CLOSED:
        return []  # Closing a closed account is a no-op.
    if account.held_points or account.buying_points:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_NOT_EMPTY,
            "the account has orders or trades under way; cancel its orders first",
            account_id=command.account_id,
            held_points=str(account.held_points),
            buying_points=str(account.buying_points),
        )
    if account.available_points:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_NOT_EMPTY,
            "only an account with a zero balance can close",
            account_id=command.account_id,
            available_points=str(account.available_points),
        )
    return [AccountClosed(command.account_id, command.reason)]


def _hold(state: Account | None, command: HoldPoints) -> list[AccountEvent]:
    _require_amount(command.amount_points)
    account = _require_open(state, command.account_id)
    _require_may_act(command.caller, account)
    _require_not_frozen(account)
    _require_available(account, command.amount_points)
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
        )
    ]


def _require_still_held(account: Account, amount_points: int, trade_id: str) -> None:
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


def _release(state: Account | None, command: ReleasePoints) -> list[AccountEvent]:
    # Like a return, a release gives back what the account escrowed itself: never refused,
    # not for a frozen account. The held points are there: I2 says they were escrowed.
    account = _require_exists(state, command.account_id)
    if command.trade_id:
        _require_still_held(account, command.amount_points, command.trade_id)
    assert account.held_points >= command.amount_points, (account, command)
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


def _sell(state: Account | None, command: SellPoints, at: Instant) -> list[AccountEvent]:
    # The seller delivers from escrow: a paid trade's quantity is never refused.
    account = _require_exists(state, command.account_id)
    _require_still_held(account, command.amount_points, command.trade_id)
    return [
        PointsSold(
            command.account_id,
            command.trade_id,
            command.order_id,
            command.amount_points,
            account.held_points - command.amount_points,
            at,
        )
    ]


def _buy(state: Account | None, command: BuyPoints, at: Instant) -> list[AccountEvent]:
    # The buyer paid: only a closed account (which may hold nothing) cannot receive.
    account = _require_open(state, command.account_id)
    return [
        PointsBought(
            command.account_id,
            command.trade_id,
            command.order_id,
            command.amount_points,
            account.available_points + command.amount_points,
            at,
        )
    ]


def _reserve_buy(state: Account | None, command: ReserveBuy) -> list[AccountEvent]:
    _require_amount(command.quantity_points)
    account = _require_open(state, command.account_id)
    _require_may_act(command.caller, account)
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
        )
    ]


def _release_buy(state: Account | None, command: ReleaseBuy) -> list[AccountEvent]:
    # Never refused, like a release of held points. A BUY order opened before orders were
    # reserved counted nothing: it releases no more than the account is buying (then 0),
    # and still records the release, which ends the step for recovery.
    account = _require_exists(state, command.account_id)
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


_DECIDERS: dict[type, Callable[[Account | None, AccountCommand], list[AccountEvent]]] = {
    OpenAccount: _open,  # type: ignore[dict-item]
    MintPoints: _mint,  # type: ignore[dict-item]
    BurnPoints: _burn,  # type: ignore[dict-item]
    CreditPoints: _credit,  # type: ignore[dict-item]
    ReturnPoints: _return,  # type: ignore[dict-item]
    FreezeAccount: _freeze,  # type: ignore[dict-item]
    UnfreezeAccount: _unfreeze,  # type: ignore[dict-item]
    SetAccountTier: _set_tier,  # type: ignore[dict-item]
    CloseAccount: _close,  # type: ignore[dict-item]
    HoldPoints: _hold,  # type: ignore[dict-item]
    ReleasePoints: _release,  # type: ignore[dict-item]
    ReserveBuy: _reserve_buy,  # type: ignore[dict-item]
    ReleaseBuy: _release_buy,  # type: ignore[dict-item]
}


# Deciders whose events state when they were decided (the program's windows count them then).
_TIMED: dict[type, Callable[[Account | None, AccountCommand, Instant], list[AccountEvent]]] = {
    DebitPoints: _debit,  # type: ignore[dict-item]
    SellPoints: _sell,  # type: ignore[dict-item]
    BuyPoints: _buy,  # type: ignore[dict-item]
}

# The limited operation of a movement's debit, by the movement's kind (an issue is not limited).
_DEBIT_OPERATIONS: dict[TransferKind, LimitedOperation] = {
    TransferKind.TRANSFER: LimitedOperation.TRANSFER,
    TransferKind.REDEEM: LimitedOperation.REDEEM,
}


def decide(
    state: Account | None,
    command: AccountCommand,
    limits_in_force: LimitIndex = NO_LIMITS,
    now_ms: int = 0,
) -> list[AccountEvent]:
    """Return the events `command` produces on `state`, or raise the DomainError refusing it.

    A command the account accepts is then held to the program's limit for its operation
    (`limits_in_force`): a transfer's or redemption's debit, a SELL order's hold, a BUY
    order's reservation; its windows count up to `now_ms`, the moment of the decision, which
    debits, sales and purchases also record.
    """
    timed = _TIMED.get(type(command))
    if timed is None:
        events = _DECIDERS[type(command)](state, command)
    else:
        events = timed(state, command, Instant(now_ms))
    if not limits_in_force.limits_any:
        return events
    match command:
        case DebitPoints(kind=kind, amount_points=amount) if kind in _DEBIT_OPERATIONS:
            operation = _DEBIT_OPERATIONS[kind]
        case HoldPoints(amount_points=amount):
            operation = LimitedOperation.MARKET_SELL
        case ReserveBuy(quantity_points=amount):
            operation = LimitedOperation.MARKET_BUY
        case _:
            return events
    assert state is not None, "a command that was accepted names an open account"
    account = state

    def counted() -> tuple[int, int]:
        """What the windows count already: past usage, and the points pending now."""
        pending = {
            LimitedOperation.MARKET_SELL: account.held_points,
            LimitedOperation.MARKET_BUY: account.buying_points,
        }.get(operation, 0)
        usage = account.usage
        return (
            usage.in_day(operation, now_ms) + pending,
            usage.in_year(operation, now_ms) + pending,
        )

    limit = limits_in_force.find(operation, account.kind, account.tier)
    check_limit(limit, account.account_id, amount, counted)
    return events


def evolve(state: Account | None, event: AccountEvent) -> Account:
    """Return the account after `event`."""
    if isinstance(event, AccountOpened):
        assert state is None, "an account opens once"
        return Account(
            event.account_id, event.kind, event.owner_partner_id, AccountStatus.OPEN, 0, 0
        )
    assert state is not None, f"{type(event).__name__} before AccountOpened"
    status, frozen_by, tier = state.status, state.frozen_by_role, state.tier
    match event:
        case AccountTierSet():
            tier = event.tier
        case AccountFrozen():
            status, frozen_by = AccountStatus.FROZEN, event.frozen_by_role
        case AccountUnfrozen():
            status, frozen_by = AccountStatus.OPEN, None
        case AccountClosed():
            status = AccountStatus.CLOSED
    available, held, buying = _balances(state, event)
    account = dataclasses.replace(
        state,
        usage=_counted(state.usage, event),
        available_points=available,
        held_points=held,
        buying_points=buying,
        status=status,
        frozen_by_role=frozen_by,
        tier=tier,
    )
    account.check()
    # The balances an event states are the balances replay arrives at (paired assertion).
    assert getattr(event, "available_points", available) == available, (event, available)
    assert getattr(event, "held_points", held) == held, (event, held)
    assert getattr(event, "buying_points", buying) == buying, (event, buying)
    return account


def _counted(usage: Usage, event: AccountEvent) -> Usage:
    """Return the usage after `event`: debits, sales and purchases count at their time."""
    match event:
        case PointsDebited(kind=kind) if kind in _DEBIT_OPERATIONS:
            operation = _DEBIT_OPERATIONS[kind]
        case PointsSold():
            operation = LimitedOperation.MARKET_SELL
        case PointsBought():
            operation = LimitedOperation.MARKET_BUY
        case _:
            return usage
    return usage.add(operation, event.decided_at.unix_ms, event.amount_points)


def _balances(state: Account, event: AccountEvent) -> tuple[int, int, int]:
    """Return (available, held, buying) after `event`."""
    available, held, buying = state.available_points, state.held_points, state.buying_points
    match event:
        case PointsBought():
            available += event.amount_points
            # An order opened before BUY orders were reserved bought what it never reserved.
            buying = max(0, buying - event.amount_points)
        case PointsMinted() | PointsCredited() | PointsReturned():
            available += event.amount_points
        case PointsBurned() | PointsDebited():
            available -= event.amount_points
        case PointsHeld():
            available, held = available - event.amount_points, held + event.amount_points
        case PointsReleased():
            available, held = available + event.amount_points, held - event.amount_points
        case PointsSold():
            held -= event.amount_points
        case BuyReserved():
            buying += event.quantity_points
        case BuyReleased():
            buying -= event.quantity_points
    return available, held, buying
