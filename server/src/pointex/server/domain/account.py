"""The account aggregate: `decide(state, command, limits) -> events` and `evolve(state, event)`.

`state` is None until the account is opened. `decide` raises a DomainError (nothing
changes) or returns the events to append; `evolve` applies one committed event and
never fails for an event `decide` produced. Both are pure: the program's limits in force
are an argument of `decide`, checked on a command the account would otherwise accept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pointex.server import limits
from pointex.server.domain import account_market, errors, lots
from pointex.server.domain.account_state import (
    Account,
    PendingIssue,
    Purchase,
    require_amount,
    require_available,
    require_exists,
    require_kind,
    require_may_act,
    require_not_frozen,
    require_open,
    require_operator,
    require_room,
)
from pointex.server.domain.commands import (
    AccountCommand,
    ActivatePoints,
    BurnPoints,
    BuyPoints,
    CloseAccount,
    CreditPoints,
    DebitPoints,
    ExpirePoints,
    FreezeAccount,
    HoldPoints,
    MintPoints,
    OpenAccount,
    ReleaseBuy,
    ReleasePoints,
    ReserveBuy,
    RestoreBought,
    ReturnBought,
    ReturnPoints,
    ReturnSold,
    SellPoints,
    SetAccountTier,
    UnfreezeAccount,
)
from pointex.server.domain.events import (
    LOTS_ARRIVING,
    AccountClosed,
    AccountEvent,
    AccountFrozen,
    AccountOpened,
    AccountTierSet,
    AccountUnfrozen,
    BoughtPointsRestored,
    BoughtPointsReturned,
    BuyReleased,
    BuyReserved,
    PointsActivated,
    PointsBought,
    PointsBurned,
    PointsCredited,
    PointsDebited,
    PointsExpired,
    PointsExpiringSoon,
    PointsHeld,
    PointsMinted,
    PointsPending,
    PointsReleased,
    PointsReturned,
    PointsSold,
    SoldPointsReturned,
)
from pointex.server.domain.program import (
    NO_LIMITS,
    LimitedOperation,
    LimitIndex,
    check_limit,
    fee_due,
)
from pointex.server.domain.usage import Usage
from pointex.server.domain.values import (
    TRANSFER_KINDS,
    AccountKind,
    AccountStatus,
    Caller,
    Instant,
    Role,
    TransferKind,
)

__all__ = ["Account", "PendingIssue", "check_credit", "decide", "evolve"]


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
    require_operator(command.caller)
    require_amount(command.amount_points)
    account = require_open(state, command.account_id)
    require_kind(account, AccountKind.MERCHANT)
    require_room(account, command.amount_points)
    available = account.available_points + command.amount_points
    return [PointsMinted(command.account_id, command.amount_points, command.memo, available)]


def _burn(state: Account | None, command: BurnPoints) -> list[AccountEvent]:
    require_operator(command.caller)
    require_amount(command.amount_points)
    account = require_open(state, command.account_id)
    require_kind(account, AccountKind.MERCHANT)
    require_available(account, command.amount_points)
    available = account.available_points - command.amount_points
    return [PointsBurned(command.account_id, command.amount_points, command.memo, available)]


def _debit(
    state: Account | None, command: DebitPoints, at: Instant, rules: LimitIndex
) -> list[AccountEvent]:
    require_amount(command.amount_points)
    if command.account_id == command.counterparty_account_id:
        raise errors.InvalidArgument(errors.SAME_ACCOUNT, "source and destination are the same")
    account = require_open(state, command.account_id)
    require_kind(account, TRANSFER_KINDS[command.kind][0])
    taken_from = ""  # An issue whose pending points a reversal takes back.
    floor = 0  # How far below zero the debt policy lets a reversal take the account.
    fee = 0  # A member-to-member transfer's fee, under the program's fee schedule.
    debt_max = rules.reversal_debt_max
    if command.kind is TransferKind.REVERSE_ISSUE or command.kind is TransferKind.REVERSE_REDEEM:
        # A reversal was authorized on its original (the caller owns the merchant), and takes
        # back from a frozen account too: reversing fraud is what a freeze is for. An issue
        # still pending gives its pending points back, never going below zero; otherwise the
        # program's debt policy says how far below zero a reversal may go (debt_max).
        pending = account.pending_issue(command.reverses) if command.reverses else None
        if pending is not None and pending.amount_points >= command.amount_points:
            taken_from = pending.transfer_id
        elif account.available_points - command.amount_points < -debt_max:
            require_available(account, command.amount_points, taking_back=True, debt_max=debt_max)
        elif account.available_points < command.amount_points:
            floor = -debt_max
    else:
        require_may_act(command.caller, account)
        require_not_frozen(account)
        # Most programs set no fee: then only a quote (to check its version) asks for one.
        if command.kind is TransferKind.TRANSFER and (rules.fees_any or command.fee_quote):
            fee = fee_due(
                rules.program, account.account_id, command.amount_points, command.fee_quote
            )
        require_available(account, command.amount_points + fee)
    taken = lots.NO_LOTS
    if account.lots and not taken_from:
        total = account.available_points + account.held_points
        taken, _ = lots.take(account.lots, total, command.amount_points + fee)
    return [
        PointsDebited(
            command.account_id,
            command.transfer_id,
            command.kind,
            command.counterparty_account_id,
            command.amount_points,
            command.memo,
            account.available_points - (0 if taken_from else command.amount_points + fee),
            at,
            taken_from,
            floor,
            fee,
            rules.program.rules.transfer_fee.fee_account_id if fee else "",
            taken,
        )
    ]


def check_credit(state: Account | None, command: CreditPoints) -> Account:
    """Raise the DomainError that a credit would meet, else return the account.

    A movement asks this of the destination before it debits the source, so that an
    obviously impossible movement moves nothing; the credit itself checks again.
    """
    account = require_open(state, command.account_id)
    require_kind(account, TRANSFER_KINDS[command.kind][1])
    require_room(account, command.amount_points)
    if command.activates_at.unix_ms and len(account.pending) >= limits.pending_issues_max:
        raise errors.FailedPrecondition(
            errors.TOO_MANY_PENDING_ISSUES,
            f"at most {limits.pending_issues_max} pending issues per account",
            account_id=account.account_id,
            limit=str(limits.pending_issues_max),
        )
    return account


def _credit(
    state: Account | None, command: CreditPoints, at: Instant, rules: LimitIndex
) -> list[AccountEvent]:
    period = rules.pending_period_ms
    if period and command.kind is TransferKind.ISSUE and not command.activates_at.unix_ms:
        # The program's pending period, for an issue that names no activation time: checked
        # as pending, so it counts among the account's pending issues.
        command = dataclasses.replace(command, activates_at=Instant(at.unix_ms + period))
    account = check_credit(state, command)
    if command.activates_at.unix_ms > at.unix_ms:
        return [
            PointsPending(
                command.account_id,
                command.transfer_id,
                command.counterparty_account_id,
                command.amount_points,
                command.memo,
                command.activates_at,
                account.pending_points + command.amount_points,
            )
        ]
    return [
        PointsCredited(
            command.account_id,
            command.transfer_id,
            command.kind,
            command.counterparty_account_id,
            command.amount_points,
            command.memo,
            account.available_points + command.amount_points,
            # Most programs keep no lots: then only a transfer's carried lots can arrive.
            _arriving(account, command, at, rules)
            if rules.expiry_on or command.lots
            else lots.NO_LOTS,
        )
    ]


def _arriving(
    account: Account, command: CreditPoints, at: Instant, rules: LimitIndex
) -> tuple[lots.Lot, ...]:
    """Return the lots a credit's points arrive in: the source's, or earned now, or none.

    A member-to-member transfer keeps the lots its debit took; points a member earns (an
    issue, a redemption given back) get a lot under the expiry policy in force; a merchant
    account keeps no lots.
    """
    if account.kind is not AccountKind.MEMBER:
        return lots.NO_LOTS
    if command.kind is TransferKind.TRANSFER:
        return command.lots
    return lots.earned(rules.expiry, at, command.amount_points)


def _return(state: Account | None, command: ReturnPoints) -> list[AccountEvent]:
    # A return gives back points this account held a moment ago, so it is never refused:
    # not for a frozen account, and not for the ceiling (the points were within it before
    # the debit). A closed source cannot occur: the account actor refuses CloseAccount
    # while any transfer from the account is in flight (actors/account_actor.py).
    account = require_exists(state, command.account_id)
    return [
        PointsReturned(
            command.account_id,
            command.transfer_id,
            command.kind,
            command.counterparty_account_id,
            command.amount_points,
            account.available_points + command.amount_points,
            account.keeps(command.lots),
        )
    ]


def _freeze(state: Account | None, command: FreezeAccount) -> list[AccountEvent]:
    account = require_open(state, command.account_id)
    require_may_act(command.caller, account)
    if account.status is AccountStatus.FROZEN:
        return []  # Already frozen: the contract makes a repeat a no-op, not an error.
    return [AccountFrozen(command.account_id, command.reason, command.caller.role)]


def _unfreeze(state: Account | None, command: UnfreezeAccount) -> list[AccountEvent]:
    account = require_open(state, command.account_id)
    require_may_act(command.caller, account)
    if account.status is not AccountStatus.FROZEN:
        return []  # Not frozen: a no-op, like freezing a frozen account.
    if account.frozen_by_role is Role.OPERATOR and command.caller.role is not Role.OPERATOR:
        raise errors.PermissionDenied(
            errors.ROLE_FORBIDDEN, "only an operator lifts an operator's freeze"
        )
    return [AccountUnfrozen(command.account_id, command.reason)]


def _set_tier(state: Account | None, command: SetAccountTier) -> list[AccountEvent]:
    account = require_open(state, command.account_id)
    require_may_act(command.caller, account)
    if account.tier == command.tier:
        return []  # The tier it has: a no-op, like freezing a frozen account.
    return [AccountTierSet(command.account_id, command.tier)]


def _activate(
    state: Account | None, command: ActivatePoints, at: Instant, rules: LimitIndex
) -> list[AccountEvent]:
    # The timer asks when it is due; a repeat, an early ask, or an issue reversed in full
    # meanwhile finds nothing to do. Never refused: the points are the account's already.
    account = require_exists(state, command.account_id)
    pending = account.pending_issue(command.transfer_id)
    if pending is None or pending.activates_at.unix_ms > at.unix_ms:
        return []
    return [
        PointsActivated(
            command.account_id,
            command.transfer_id,
            pending.amount_points,
            account.available_points + pending.amount_points,
            account.pending_points - pending.amount_points,
            lots.earned(rules.expiry, at, pending.amount_points),
        )
    ]


def _expire(
    state: Account | None, command: ExpirePoints, at: Instant, rules: LimitIndex
) -> list[AccountEvent]:
    # The expiry timer asks when a lot is due or to be told of; an early ask or a repeat
    # finds nothing to do. Never refused: lapsing is the program's rule, not a request.
    account = require_exists(state, command.account_id)
    if not account.lots:
        return []
    events: list[AccountEvent] = []
    lapsing = min(lots.due(account.lots, at.unix_ms), max(0, account.available_points))
    left = account.lots
    if lapsing:
        lapsed, left = lots.lapse(account.lots, lapsing, at.unix_ms)
        available = account.available_points - lapsing
        events.append(PointsExpired(command.account_id, lapsing, available, lapsed, at))
    notice = rules.expiry.notice.ms
    if notice:
        soon, first, last = lots.upcoming(left, account.noticed_through_ms, at.unix_ms + notice)
        if soon:
            events.append(
                PointsExpiringSoon(command.account_id, soon, Instant(first), Instant(last))
            )
    return events


def _close(state: Account | None, command: CloseAccount) -> list[AccountEvent]:
    account = require_exists(state, command.account_id)
    require_may_act(command.caller, account)
    if account.status is AccountStatus.CLOSED:
        return []  # Closing a closed account is a no-op.
    if account.pending:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_NOT_EMPTY,
            "the account has pending points; they activate or are reversed first",
            account_id=command.account_id,
            pending_points=str(account.pending_points),
        )
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


_DECIDERS: dict[type, Callable[[Account | None, AccountCommand], list[AccountEvent]]] = {
    OpenAccount: _open,  # type: ignore[dict-item]
    MintPoints: _mint,  # type: ignore[dict-item]
    BurnPoints: _burn,  # type: ignore[dict-item]
    ReturnPoints: _return,  # type: ignore[dict-item]
    FreezeAccount: _freeze,  # type: ignore[dict-item]
    UnfreezeAccount: _unfreeze,  # type: ignore[dict-item]
    SetAccountTier: _set_tier,  # type: ignore[dict-item]
    CloseAccount: _close,  # type: ignore[dict-item]
    HoldPoints: account_market.hold,  # type: ignore[dict-item]
    ReleasePoints: account_market.release,  # type: ignore[dict-item]
    ReserveBuy: account_market.reserve_buy,  # type: ignore[dict-item]
    ReleaseBuy: account_market.release_buy,  # type: ignore[dict-item]
    ReturnSold: account_market.return_sold,  # type: ignore[dict-item]
    RestoreBought: account_market.restore_bought,  # type: ignore[dict-item]
}


# Deciders that need the moment of the decision: the program's windows count sales and
# purchases then, and it tells whether an issue's points are pending or active. (A debit
# needs it too, and the debt policy of reversals: `decide` calls it itself.)
_TIMED: dict[type, Callable[[Account | None, AccountCommand, Instant], list[AccountEvent]]] = {
    SellPoints: account_market.sell,  # type: ignore[dict-item]
    ReturnBought: account_market.return_bought,  # type: ignore[dict-item]
}
# Deciders that need the moment and the program's rules: what points earned now get (the
# expiry policy), and the expiry timer's own command.
_RULED: dict[
    type, Callable[[Account | None, AccountCommand, Instant, LimitIndex], list[AccountEvent]]
] = {
    CreditPoints: _credit,  # type: ignore[dict-item]
    ActivatePoints: _activate,  # type: ignore[dict-item]
    ExpirePoints: _expire,  # type: ignore[dict-item]
    BuyPoints: account_market.buy,  # type: ignore[dict-item]
}


def _limited(command: AccountCommand) -> tuple[LimitedOperation, int] | None:
    """Return the limited operation of `command` and the points it carries, if it has one."""
    match command:
        case DebitPoints(kind=kind, amount_points=amount):
            operation = _debit_operation(kind)
            return None if operation is None else (operation, amount)
        case HoldPoints(amount_points=amount):
            return LimitedOperation.MARKET_SELL, amount
        case ReserveBuy(quantity_points=amount):
            return LimitedOperation.MARKET_BUY, amount
        case _:
            return None


def _debit_operation(kind: TransferKind) -> LimitedOperation | None:
    """Return the limited operation of a movement's debit (an issue or a reversal: none).

    Identity tests, not an enum-keyed look-up: a Python enum's hash is a Python-level call,
    and this runs for every debit.
    """
    if kind is TransferKind.TRANSFER:
        return LimitedOperation.TRANSFER
    if kind is TransferKind.REDEEM:
        return LimitedOperation.REDEEM
    return None


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
    command_type = type(command)
    if command_type is DebitPoints:
        events = _debit(state, command, Instant(now_ms), limits_in_force)  # type: ignore[arg-type]
    elif (ruled := _RULED.get(command_type)) is not None:
        events = ruled(state, command, Instant(now_ms), limits_in_force)
    elif (timed := _TIMED.get(command_type)) is not None:
        events = timed(state, command, Instant(now_ms))
    else:
        events = _DECIDERS[command_type](state, command)
    if not limits_in_force.limits_any:
        return events
    limited = _limited(command)
    if limited is None:
        return events
    operation, amount = limited
    assert state is not None, "a command that was accepted names an open account"
    account = state

    def counted() -> tuple[int, int]:
        """What the windows count already: past usage, and the points pending now."""
        if operation is LimitedOperation.MARKET_SELL:
            pending = account.held_points
        elif operation is LimitedOperation.MARKET_BUY:
            pending = account.buying_points
        else:
            pending = 0
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
    kind = type(event)
    # Built field by field, not with dataclasses.replace: this runs for every event.
    account = Account(
        state.account_id,
        state.kind,
        state.owner_partner_id,
        status,
        available,
        held,
        frozen_by,
        buying,
        tier,
        _counted(state.usage, event) if kind in _COUNTED else state.usage,
        _pending(state.pending, event) if kind in _PENDING_CHANGES else state.pending,
        _lots(state, event)
        if state.lots or (kind in _BRINGING_LOTS and event.lots)  # type: ignore[union-attr]
        else state.lots,
        event.last_expires_at.unix_ms if kind is PointsExpiringSoon else state.noticed_through_ms,  # type: ignore[union-attr]
        _purchases(state, event) if state.purchases or kind is PointsBought else state.purchases,
    )
    account.check()
    # The balances an event states are the balances replay arrives at (paired assertion).
    assert getattr(event, "available_points", available) == available, (event, available)
    assert getattr(event, "held_points", held) == held, (event, held)
    assert getattr(event, "buying_points", buying) == buying, (event, buying)
    assert kind not in _STATES_PENDING or event.pending_points == account.pending_points, event  # type: ignore[union-attr]
    return account


# The events that may bring lots to an account without any (domain/lots.py).
_BRINGING_LOTS = frozenset(LOTS_ARRIVING)
# The events that change what an account has pending, that the windows count, and that state
# the pending points after them.
_PENDING_CHANGES = frozenset({PointsPending, PointsActivated, PointsDebited})
_COUNTED = frozenset({PointsDebited, PointsSold, PointsBought})
_STATES_PENDING = frozenset({PointsPending, PointsActivated})


def _pending(pending: tuple[PendingIssue, ...], event: AccountEvent) -> tuple[PendingIssue, ...]:
    """Return the pending issues after `event`: added, activated, or reversed (in part)."""
    match event:
        case PointsPending():
            return (
                *pending,
                PendingIssue(event.transfer_id, event.amount_points, event.activates_at),
            )
        case PointsActivated():
            return tuple(issue for issue in pending if issue.transfer_id != event.transfer_id)
        case PointsDebited(pending_transfer_id=taken_from) if taken_from:
            i = next(i for i, issue in enumerate(pending) if issue.transfer_id == taken_from)
            left = pending[i].amount_points - event.amount_points
            kept = (dataclasses.replace(pending[i], amount_points=left),) if left else ()
            return (*pending[:i], *kept, *pending[i + 1 :])
        case _:
            return pending


def _lots(state: Account, event: AccountEvent) -> tuple[lots.Lot, ...]:
    """Return the account's lots after `event`: points left oldest first, or arrived."""
    total = state.available_points + state.held_points
    match event:
        case PointsDebited(pending_transfer_id=""):
            taken, left = lots.take(state.lots, total, event.amount_points + event.fee_points)
            assert taken == event.lots, (event, taken)
            return left
        case PointsSold():
            taken, left = lots.take(state.lots, total, event.amount_points)
            assert taken == event.lots, (event, taken)
            return left
        case (
            PointsCredited()
            | PointsReturned()
            | PointsBought()
            | PointsActivated()
            | SoldPointsReturned()
            | BoughtPointsRestored()
        ):
            return lots.add(state.lots, total, event.lots, event.amount_points)
        case BoughtPointsReturned():
            return lots.remove(state.lots, event.lots)
        case PointsExpired():
            lapsed, left = lots.lapse(state.lots, event.amount_points, event.decided_at.unix_ms)
            assert lapsed == event.lots, (event, lapsed)
            return left
        case _:
            return state.lots


def _purchases(state: Account, event: AccountEvent) -> tuple[Purchase, ...]:
    """Return the refundable purchases after `event`: one added, refunded, or all spent.

    Any point leaving the account (a debit, a hold for a SELL order, an expiry) spends every
    purchase kept: points are fungible, so none of a purchase is known unspent afterwards.
    """
    match event:
        case PointsBought(refundable_until=until) if until.unix_ms:
            now = event.decided_at.unix_ms
            kept = [p for p in state.purchases if p.refundable_until.unix_ms >= now]
            # Points that paid off a debt are spent at once.
            bought = Purchase(
                event.trade_id,
                event.amount_points,
                until,
                event.lots,
                spent=state.available_points < 0,
            )
            return (*kept, bought)[-limits.refundable_purchases_max :]
        case BoughtPointsReturned():
            return tuple(p for p in state.purchases if p.trade_id != event.trade_id)
        case PointsDebited(pending_transfer_id="") | PointsHeld() | PointsExpired():
            return tuple(dataclasses.replace(p, spent=True) for p in state.purchases)
        case _:
            return state.purchases


def _counted(usage: Usage, event: AccountEvent) -> Usage:
    """Return the usage after `event`: debits, sales and purchases count at their time."""
    operation: LimitedOperation | None
    if isinstance(event, PointsDebited):
        operation = _debit_operation(event.kind)
        if operation is None:
            return usage
    elif isinstance(event, PointsSold):
        operation = LimitedOperation.MARKET_SELL
    else:
        assert isinstance(event, PointsBought), event
        operation = LimitedOperation.MARKET_BUY
    return usage.add(operation, event.decided_at.unix_ms, event.amount_points)


def _balances(state: Account, event: AccountEvent) -> tuple[int, int, int]:
    """Return (available, held, buying) after `event`."""
    available, held, buying = state.available_points, state.held_points, state.buying_points
    match event:
        case PointsBought():
            available += event.amount_points
            # An order opened before BUY orders were reserved bought what it never reserved.
            buying = max(0, buying - event.amount_points)
        case (
            PointsMinted()
            | PointsCredited()
            | PointsReturned()
            | PointsActivated()
            | SoldPointsReturned()
            | BoughtPointsRestored()
        ):
            available += event.amount_points
        case PointsDebited(pending_transfer_id=""):
            # A reversal taking an issue's pending points back leaves available (_pending).
            available -= event.amount_points + event.fee_points
        case PointsBurned() | PointsExpired() | BoughtPointsReturned():
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
