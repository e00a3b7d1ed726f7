"""What an account is (its state), and the checks every account decider shares.

`Account` is the state `domain/account.py` decides on and evolves; the `require_*`
functions raise the DomainError a command meets when the account cannot take it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.lots import NO_LOTS, Lot, points
from pointex.server.domain.usage import NO_USAGE, Usage
from pointex.server.domain.values import AccountKind, AccountStatus, Caller, Instant, Role


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
    # Issues whose points activate later, oldest first: not spendable until then.
    pending: tuple[PendingIssue, ...] = ()
    # A member's expiring points, oldest first (domain/lots.py); the rest never lapse.
    lots: tuple[Lot, ...] = NO_LOTS
    # Lots lapsing up to this moment (ms) were announced as expiring soon.
    noticed_through_ms: int = 0
    # Market purchases within their cooling-off window, oldest first (refundable if unspent).
    purchases: tuple[Purchase, ...] = ()

    def check(self) -> None:
        """Assert the account's own invariants (balances within 0..ceiling)."""
        # Below zero only after a reversal under the program's debt policy, within its bound.
        assert self.available_points >= -limits.points_amount_max, self
        assert self.held_points >= 0, self
        assert self.buying_points >= 0, self
        if self.pending:
            assert all(issue.amount_points > 0 for issue in self.pending), self
        if self.lots:
            assert self.kind is AccountKind.MEMBER, self
            assert points(self.lots) <= max(0, self.available_points + self.held_points), self
            assert all(lot.amount_points > 0 for lot in self.lots), self
        if self.status is AccountStatus.CLOSED:
            assert self.total_points == self.buying_points == 0, self

    @property
    def pending_points(self) -> int:
        """Return the points of issues not active yet."""
        if not self.pending:
            return 0
        return sum(issue.amount_points for issue in self.pending)

    @property
    def total_points(self) -> int:
        """Return available, held and pending points: what the ceiling and I1 count."""
        return self.available_points + self.held_points + self.pending_points

    def keeps(self, arriving: tuple[Lot, ...]) -> tuple[Lot, ...]:
        """Return the lots it keeps of points arriving in `arriving` (a merchant keeps none)."""
        return arriving if self.kind is AccountKind.MEMBER else NO_LOTS

    def pending_issue(self, transfer_id: str) -> PendingIssue | None:
        """Return the pending points of the issue `transfer_id`, if some are still pending."""
        return next((issue for issue in self.pending if issue.transfer_id == transfer_id), None)


@dataclass(frozen=True, slots=True)
class PendingIssue:
    """Points of one issue that activate later (pending earn)."""

    transfer_id: str
    amount_points: int
    activates_at: Instant


@dataclass(frozen=True, slots=True)
class Purchase:
    """A market purchase the buyer may have refunded until `refundable_until` (cooling-off).

    `spent`: points left the account since it was bought (or it paid off a debt), so it is
    no longer refundable; kept, to say so by name.
    """

    trade_id: str
    amount_points: int
    refundable_until: Instant
    lots: tuple[Lot, ...]
    spent: bool = False


def require_amount(amount_points: int) -> None:
    """Refuse an amount that is not positive or is above the per-command maximum."""
    if amount_points <= 0:
        raise errors.InvalidArgument(errors.AMOUNT_NOT_POSITIVE, "amount must be positive")
    if amount_points > limits.points_amount_max:
        raise errors.InvalidArgument(
            errors.AMOUNT_TOO_LARGE,
            f"amount exceeds {limits.points_amount_max}",
            limit=str(limits.points_amount_max),
        )


def require_open(state: Account | None, account_id: str) -> Account:
    """Return the account; refuse one that does not exist or is closed."""
    account = require_exists(state, account_id)
    if account.status is AccountStatus.CLOSED:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_CLOSED, "account is closed", account_id=account_id
        )
    return account


def require_exists(state: Account | None, account_id: str) -> Account:
    """Return the account; refuse one that was never opened."""
    if state is None:
        raise errors.NotFound(errors.ACCOUNT_NOT_FOUND, "no such account", account_id=account_id)
    return state


def require_may_act(caller: Caller, account: Account) -> None:
    """Refuse a caller that may not act for the account's owner."""
    if not caller.may_act_for(account.owner_partner_id):
        raise errors.PermissionDenied(
            errors.NOT_OWNER,
            "the account belongs to another partner",
            account_id=account.account_id,
        )


def require_operator(caller: Caller) -> None:
    """Refuse a caller that is not the operator."""
    if caller.role is not Role.OPERATOR:
        raise errors.PermissionDenied(errors.ROLE_FORBIDDEN, "only an operator may do this")


def require_kind(account: Account, kind: AccountKind) -> None:
    """Refuse an account of another kind than `kind`."""
    if account.kind is not kind:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_KIND_MISMATCH,
            f"account is a {account.kind.value}, this needs a {kind.value}",
            account_id=account.account_id,
        )


def require_not_frozen(account: Account) -> None:
    """Refuse a frozen account."""
    if account.status is AccountStatus.FROZEN:
        raise errors.FailedPrecondition(
            errors.ACCOUNT_FROZEN, "account is frozen", account_id=account.account_id
        )


def require_room(account: Account, amount_points: int) -> None:
    """Refuse a credit that would put the account over the balance ceiling."""
    if account.total_points + amount_points > limits.points_balance_max:
        raise errors.FailedPrecondition(
            errors.BALANCE_CEILING_EXCEEDED,
            f"balance would exceed {limits.points_balance_max}",
            account_id=account.account_id,
        )


def require_available(
    account: Account, amount_points: int, *, taking_back: bool = False, debt_max: int = 0
) -> None:
    """Refuse a debit of more than is available, naming why.

    INSUFFICIENT_POINTS, or POINTS_ALREADY_SPENT for a reversal taking back points the
    account no longer has beyond what the debt policy allows (`debt_max`).
    """
    if account.available_points + debt_max >= amount_points:
        return
    if taking_back:
        raise errors.FailedPrecondition(
            errors.POINTS_ALREADY_SPENT,
            "the points to take back are no longer available",
            account_id=account.account_id,
            available_points=str(account.available_points),
            required_points=str(amount_points),
            limit=str(debt_max),
        )
    raise errors.FailedPrecondition(
        errors.INSUFFICIENT_POINTS,
        "not enough available points",
        account_id=account.account_id,
        available_points=str(account.available_points),
    )
