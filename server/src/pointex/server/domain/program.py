"""The program's rules: limits an operator sets, and the one check every limited command meets.

The rules are the state of one stream (`program-main`), changed only as a whole by
`SetProgramRules`; its version counts the changes. An account's actor checks the limits in
force when it decides a command (`check_limit`), so a change applies to every command
decided after it was committed, and never to one decided before.

Of the limits of one operation, one applies to an account: the one naming its kind and tier,
else its tier only, else its kind only, else neither (`LimitIndex.find`).

A member-to-member transfer pays the transfer fee in force when its debit is decided
(`TransferFee`); a quote names the fee schedule's version (`Program.fees_version`), and a
transfer carrying one is refused if the schedule changed since (`fee_due`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.lots import NO_EXPIRY, ExpiryPolicy
from pointex.server.domain.values import AccountKind, Caller, Role, Span


class LimitedOperation(enum.Enum):
    """What a limit counts: points leaving an account, or a BUY order's quantity."""

    TRANSFER = "TRANSFER"
    REDEEM = "REDEEM"
    MARKET_BUY = "MARKET_BUY"
    MARKET_SELL = "MARKET_SELL"


@dataclass(frozen=True, slots=True)
class TransactionLimit:
    """The points one command of `operation` may carry, for the accounts it names (0: no bound)."""

    operation: LimitedOperation
    account_kind: AccountKind | None  # None: every kind.
    tier: str  # Empty: every tier.
    min_points: int
    max_points: int
    step_points: int
    daily_max_points: int = 0  # In a rolling day (domain/usage.py); 0: no cap.
    yearly_max_points: int = 0  # In a calendar year (UTC); 0: no cap.

    @property
    def scope(self) -> tuple[LimitedOperation, AccountKind | None, str]:
        """Return what the limit is for; two limits of one program never share it."""
        return self.operation, self.account_kind, self.tier


@dataclass(frozen=True, slots=True)
class TransferFee:
    """What a transfer pays on top of its points: flat + ceil(points * per_mille / 1000)."""

    flat_points: int = 0
    per_mille: int = 0
    fee_account_id: str = ""  # The MERCHANT account credited; required when a part is set.

    def fee_of(self, from_account_id: str, amount_points: int) -> int:
        """Return the fee a transfer of `amount_points` from `from_account_id` pays."""
        if from_account_id == self.fee_account_id:
            return 0  # The program moving its own fees pays none (and no schedule: none).
        return self.flat_points + -(-amount_points * self.per_mille // _PER_MILLE)


_PER_MILLE: Final = 1000
NO_FEE = TransferFee()
NO_SPAN: Final = Span(0)


@dataclass(frozen=True, slots=True)
class ProgramRules:
    """Everything an operator sets for the program, replaced as a whole."""

    limits: tuple[TransactionLimit, ...] = ()
    # How far below zero a reversal may take an account whose points were spent (0: refused).
    reversal_debt_max_points: int = 0
    transfer_fee: TransferFee = NO_FEE
    expiry: ExpiryPolicy = NO_EXPIRY  # How long earned points last (domain/lots.py).
    # How long after a market purchase settles the buyer may have it refunded (0: never).
    cooling_off: Span = NO_SPAN
    # How long issued points stay pending when the issue names no activation time (0: none).
    pending_period: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class Program:
    """The rules in force, their version (the number of changes so far), the fees' version."""

    version: int
    rules: ProgramRules
    fees_version: int = 0  # The version at which the transfer fee last changed (0: never).


@dataclass(frozen=True, slots=True)
class FeeQuote:
    """A fee a transfer would pay, and the version of the fee schedule it comes from."""

    fee_points: int
    schedule_version: int


def quote(program: Program, from_account_id: str, amount_points: int) -> FeeQuote:
    """Return the fee a transfer of `amount_points` from `from_account_id` pays under `program`."""
    fee = program.rules.transfer_fee.fee_of(from_account_id, amount_points)
    return FeeQuote(fee, program.fees_version)


def fee_due(
    program: Program, from_account_id: str, amount_points: int, quoted: FeeQuote | None
) -> int:
    """Return the fee a transfer pays now, holding it to its quote if it carries one.

    Raises FEE_SCHEDULE_CHANGED when the schedule changed since the quote, and
    INVALID_ARGUMENT when the quote is not this transfer's (another amount or source).
    """
    now = quote(program, from_account_id, amount_points)
    if quoted is None:
        return now.fee_points
    if quoted.schedule_version != now.schedule_version:
        raise errors.FailedPrecondition(
            errors.FEE_SCHEDULE_CHANGED,
            "the fee schedule changed since the quote; quote again",
            schedule_version=str(now.schedule_version),
            fee_points=str(now.fee_points),
        )
    if quoted.fee_points != now.fee_points:
        raise _invalid("fee_quote.fee_points", f"the quote of this transfer is {now.fee_points}")
    return now.fee_points


NO_PROGRAM = Program(0, ProgramRules())


@dataclass(frozen=True, slots=True)
class SetProgramRules:
    """Replace the program's rules, if they are still at `expected_version`."""

    caller: Caller
    expected_version: int
    rules: ProgramRules


@dataclass(frozen=True, slots=True)
class ProgramRulesSet:
    """The rules in force from here on."""

    rules: ProgramRules


def validate(rules: ProgramRules) -> None:
    """Raise InvalidArgument (naming the field) for rules that cannot be set."""
    if len(rules.limits) > limits.program_limits_max:
        raise errors.InvalidArgument(
            errors.FIELD_TOO_LONG,
            f"at most {limits.program_limits_max} limits",
            field="rules.limits",
            limit=str(limits.program_limits_max),
        )
    if not 0 <= rules.reversal_debt_max_points <= limits.points_amount_max:
        raise _invalid("rules.reversal_debt_max_points", f"0 to {limits.points_amount_max} points")
    _validate_fee(rules.transfer_fee)
    _validate_expiry(rules.expiry)
    for field, span, days in (
        ("rules.cooling_off", rules.cooling_off, limits.cooling_off_days_max),
        ("rules.pending_period", rules.pending_period, limits.pending_activation_days_max),
    ):
        if span.ms % _SECOND_MS or not 0 <= span.ms <= days * _DAY_MS:
            raise _invalid(field, f"whole seconds, up to {days} days")
    seen: set[tuple[LimitedOperation, AccountKind | None, str]] = set()
    for i, limit in enumerate(rules.limits):
        field = f"rules.limits[{i}]"
        bounds = (limit.min_points, limit.max_points, limit.step_points)
        if any(bound < 0 or bound > limits.points_amount_max for bound in bounds):
            raise _invalid(field, f"per-command bounds are 0 to {limits.points_amount_max}")
        caps = (limit.daily_max_points, limit.yearly_max_points)
        if any(cap < 0 or cap > limits.points_balance_max for cap in caps):
            raise _invalid(field, f"caps are 0 to {limits.points_balance_max}")
        if limit.max_points and limit.max_points < limit.min_points:
            raise _invalid(f"{field}.max_points", "the maximum is below the minimum")
        if limit.scope in seen:
            raise _invalid(field, "a second limit for the same operation, account kind and tier")
        seen.add(limit.scope)


def _validate_fee(fee: TransferFee) -> None:
    """Raise InvalidArgument for a fee schedule out of its bounds or without its account."""
    field = "rules.transfer_fee"
    if not 0 <= fee.flat_points <= limits.points_amount_max:
        raise _invalid(f"{field}.flat_points", f"0 to {limits.points_amount_max} points")
    if not 0 <= fee.per_mille <= _PER_MILLE:
        raise _invalid(f"{field}.per_mille", f"0 to {_PER_MILLE} thousandths")
    if (fee.flat_points or fee.per_mille) and not fee.fee_account_id:
        raise _invalid(f"{field}.fee_account_id", "a fee needs the account it goes to")


def _validate_expiry(expiry: ExpiryPolicy) -> None:
    """Raise InvalidArgument for an expiry policy out of its bounds."""
    field = "rules.expiry"
    longest = limits.expiry_lifetime_days_max * _DAY_MS
    if expiry.lifetime.ms and not _SECOND_MS <= expiry.lifetime.ms <= longest:
        raise _invalid(
            f"{field}.lifetime", f"1 second to {limits.expiry_lifetime_days_max} days, or 0"
        )
    if expiry.lifetime.ms % _SECOND_MS or expiry.notice.ms % _SECOND_MS:
        raise _invalid(field, "lifetimes and notices are whole seconds")
    if expiry.notice.ms and not 0 < expiry.notice.ms < expiry.lifetime.ms:
        raise _invalid(f"{field}.notice", "a notice is shorter than the lifetime, or 0")


_SECOND_MS: Final = 1000
_DAY_MS: Final = 86_400_000


def _invalid(field: str, message: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(errors.INVALID_FIELD, message, field=field)


def decide(state: Program, command: SetProgramRules) -> list[ProgramRulesSet]:
    """Return the change `command` makes, or raise the DomainError refusing it."""
    if command.caller.role is not Role.OPERATOR:
        raise errors.PermissionDenied(errors.ROLE_FORBIDDEN, "only an operator sets the rules")
    validate(command.rules)
    if command.expected_version != state.version:
        raise errors.FailedPrecondition(
            errors.PROGRAM_RULES_CHANGED,
            "the rules changed since they were read; read them again",
            version=str(state.version),
        )
    return [ProgramRulesSet(command.rules)]


def evolve(state: Program, event: ProgramRulesSet) -> Program:
    """Return the program after `event`; a new fee schedule takes the new version."""
    version = state.version + 1
    changed = event.rules.transfer_fee != state.rules.transfer_fee
    return Program(version, event.rules, version if changed else state.fees_version)


class LimitIndex:
    """The limits in force, found by operation, account kind and tier in constant time."""

    __slots__ = (
        "_by_scope",
        "cooling_off",
        "expiry",
        "expiry_on",
        "fees_any",
        "limits_any",
        "pending_period",
        "pending_period_ms",
        "program",
        "reversal_debt_max",
        "version",
    )

    def __init__(self, program: Program) -> None:
        """Index `program`'s limits."""
        self.program = program  # Its transfer fee schedule, for `fee_due`.
        fee = program.rules.transfer_fee
        self.fees_any = bool(fee.flat_points or fee.per_mille)  # False: no transfer pays one.
        self.version = program.version
        self.reversal_debt_max = program.rules.reversal_debt_max_points
        self.expiry = program.rules.expiry  # Whether, and when, points earned now lapse.
        self.expiry_on = self.expiry.on  # Read on every credit: a slot, not a property.
        self.cooling_off = program.rules.cooling_off  # How long a purchase is refundable.
        self.pending_period = program.rules.pending_period  # Issues pending by default.
        self.pending_period_ms = self.pending_period.ms
        self._by_scope = {_key(*limit.scope): limit for limit in program.rules.limits}
        self.limits_any = bool(self._by_scope)  # False: nothing is limited (the common case).

    def find(
        self, operation: LimitedOperation, kind: AccountKind, tier: str
    ) -> TransactionLimit | None:
        """Return the limit that applies to an account of `kind` and `tier`, if any."""
        by_scope = self._by_scope
        if tier:
            found = by_scope.get(_key(operation, kind, tier)) or by_scope.get(
                _key(operation, None, tier)
            )
            if found is not None:
                return found
        return by_scope.get(_key(operation, kind, "")) or by_scope.get(_key(operation, None, ""))


def _key(operation: LimitedOperation, kind: AccountKind | None, tier: str) -> tuple[int, int, str]:
    """Return a scope's key, enum members by identity.

    An id hashes in C, an enum member's own hash is a Python call; the index is asked on
    every limited command.
    """
    return id(operation), id(kind), tier


NO_LIMITS = LimitIndex(NO_PROGRAM)

# Stable type name and current schema version of the program's events (see events.py).
PROGRAM_EVENT_TYPES: Final[dict[type[ProgramRulesSet], tuple[str, int]]] = {
    ProgramRulesSet: ("ProgramRulesSet", 1),
}


def check_limit(
    limit: TransactionLimit | None,
    account_id: str,
    amount_points: int,
    counted: Callable[[], tuple[int, int]],
) -> None:
    """Raise the FailedPrecondition naming the bound `amount_points` breaks, if it breaks one.

    `counted` returns what the windows count already (rolling day, calendar year), pending
    points included; it is asked only when the limit has a cap.
    """
    if limit is None:
        return
    _check_command(limit, account_id, amount_points)
    if not (limit.daily_max_points or limit.yearly_max_points):
        return
    in_day, in_year = counted()
    for window, cap, used in (
        ("rolling_24h", limit.daily_max_points, in_day),
        ("calendar_year", limit.yearly_max_points, in_year),
    ):
        if cap and used + amount_points > cap:
            raise errors.FailedPrecondition(
                errors.LIMIT_EXCEEDED,
                f"at most {cap} points of {limit.operation.value.lower()} per {_NAMES[window]}",
                account_id=account_id,
                operation=limit.operation.value,
                window=window,
                limit=str(cap),
                remaining_points=str(max(0, cap - used)),
            )


_NAMES: Final = {"rolling_24h": "24 hours", "calendar_year": "calendar year"}


def _check_command(limit: TransactionLimit, account_id: str, amount_points: int) -> None:
    """Raise the FailedPrecondition naming the per-command bound `amount_points` breaks."""
    context = {
        "account_id": account_id,
        "operation": limit.operation.value,
        "window": "transaction",
    }
    if limit.min_points and amount_points < limit.min_points:
        raise errors.FailedPrecondition(
            errors.AMOUNT_BELOW_MINIMUM,
            f"at least {limit.min_points} points per {limit.operation.value.lower()}",
            limit=str(limit.min_points),
            **context,
        )
    if limit.max_points and amount_points > limit.max_points:
        raise errors.FailedPrecondition(
            errors.LIMIT_EXCEEDED,
            f"at most {limit.max_points} points per {limit.operation.value.lower()}",
            limit=str(limit.max_points),
            remaining_points=str(limit.max_points),
            **context,
        )
    if limit.step_points > 1 and amount_points % limit.step_points:
        raise errors.FailedPrecondition(
            errors.AMOUNT_NOT_IN_STEPS,
            f"amounts go in steps of {limit.step_points} points",
            limit=str(limit.step_points),
            **context,
        )
