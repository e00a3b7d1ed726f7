"""The program's rules: setting them, finding the limit that applies, and every account check.

A limit binds a transfer's or redemption's debit, a SELL order's hold and a BUY order's
reservation; the property test draws random rules, tiers and commands and checks that no
accepted command breaks the limit that applies to it, and that every refusal names a bound
the amount really breaks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.server import limits
from pointex.server.actors import snapshots
from pointex.server.domain import errors, program
from pointex.server.domain.account import Account, decide, evolve
from pointex.server.domain.commands import (
    AccountCommand,
    BuyPoints,
    CreditPoints,
    DebitPoints,
    HoldPoints,
    MintPoints,
    OpenAccount,
    ReleasePoints,
    ReserveBuy,
    SellPoints,
    SetAccountTier,
)
from pointex.server.domain.events import AccountEvent, AccountTierSet
from pointex.server.domain.program import (
    NO_PROGRAM,
    LimitedOperation,
    LimitIndex,
    Program,
    ProgramRules,
    ProgramRulesSet,
    SetProgramRules,
    TransactionLimit,
)
from pointex.server.domain.usage import Usage, year_of
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    Caller,
    Role,
    TimeInForce,
    TransferKind,
)

ACME = Caller(Role.PARTNER, "acme")
TRANSFER, REDEEM = LimitedOperation.TRANSFER, LimitedOperation.REDEEM
BUY, SELL = LimitedOperation.MARKET_BUY, LimitedOperation.MARKET_SELL
MEMBER, MERCHANT = AccountKind.MEMBER, AccountKind.MERCHANT


def limit(
    operation: LimitedOperation = TRANSFER,
    kind: AccountKind | None = None,
    tier: str = "",
    *,
    low: int = 0,
    high: int = 0,
    step: int = 0,
    daily: int = 0,
    yearly: int = 0,
) -> TransactionLimit:
    """A limit of `operation` for `kind` and `tier` (None, "": every one)."""
    return TransactionLimit(operation, kind, tier, low, high, step, daily, yearly)


def index(*limits_: TransactionLimit) -> LimitIndex:
    """The limits in force after setting `limits_` once."""
    return LimitIndex(Program(1, ProgramRules(limits_)))


def apply(state: Account | None, command: AccountCommand, rules: LimitIndex) -> Account:
    """Decide `command` on `state` under `rules` and evolve through its events."""
    for event in decide(state, command, rules):
        state = evolve(state, event)
    assert state is not None
    return state


def member(points: int, tier: str = "", kind: AccountKind = MEMBER) -> Account:
    """An open account of acme holding `points`, with `tier`."""
    rules = program.NO_LIMITS
    state = apply(None, OpenAccount(ACME, "u1", kind, "acme", "Ann"), rules)
    if kind is MERCHANT:
        state = apply(state, MintPoints(OPERATOR, "u1", points, "funding"), rules)
    else:
        state = apply(state, CreditPoints("u1", "t0", TransferKind.ISSUE, "m1", points, ""), rules)
    if tier:
        state = apply(state, SetAccountTier(ACME, "u1", tier), rules)
    return state


def command_of(operation: LimitedOperation, amount: int) -> AccountCommand:
    """The account step of `operation` carrying `amount` points."""
    if operation is BUY:
        return ReserveBuy(ACME, "u1", "o1", "PTS-CNY", amount, 100, TimeInForce.GTC, "")
    if operation is SELL:
        return HoldPoints(ACME, "u1", "o1", "PTS-CNY", amount, 100, TimeInForce.GTC, "")
    kind = TransferKind.TRANSFER if operation is TRANSFER else TransferKind.REDEEM
    return DebitPoints(ACME, "u1", "t1", kind, "u2", amount, "")


def refusal(state: Account, command: AccountCommand, rules: LimitIndex) -> errors.DomainError:
    """Return the DomainError `command` meets on `state` under `rules`."""
    with pytest.raises(errors.DomainError) as caught:
        decide(state, command, rules)
    return caught.value


# --- Which limit applies ---------------------------------------------------------------------


def test_the_most_specific_limit_applies() -> None:
    """Kind and tier, then tier, then kind, then neither; another operation's never."""
    everyone = limit(high=10)
    members = limit(kind=MEMBER, high=20)
    gold = limit(tier="gold", high=30)
    gold_members = limit(kind=MEMBER, tier="gold", high=40)
    rules = index(everyone, members, gold, gold_members, limit(REDEEM, high=1))
    assert rules.find(TRANSFER, MEMBER, "gold") == gold_members
    assert rules.find(TRANSFER, MERCHANT, "gold") == gold
    assert rules.find(TRANSFER, MEMBER, "silver") == members
    assert rules.find(TRANSFER, MEMBER, "") == members
    assert rules.find(TRANSFER, MERCHANT, "") == everyone
    assert rules.find(BUY, MEMBER, "gold") is None
    assert index(members).find(TRANSFER, MERCHANT, "gold") is None


# --- Per-transaction bounds on the account -----------------------------------------------------


@pytest.mark.parametrize("operation", [TRANSFER, REDEEM, BUY, SELL])
def test_each_bound_refuses_with_its_reason_and_metadata(operation: LimitedOperation) -> None:
    """Below the minimum, above the maximum, off the step: each named, nothing decided."""
    rules = index(limit(operation, low=100, high=25_000, step=50))
    account = member(100_000)
    below = refusal(account, command_of(operation, 50), rules)
    above = refusal(account, command_of(operation, 25_050), rules)
    off_step = refusal(account, command_of(operation, 120), rules)
    assert (below.reason, below.metadata["limit"]) == (errors.AMOUNT_BELOW_MINIMUM, "100")
    assert (above.reason, above.metadata["limit"]) == (errors.LIMIT_EXCEEDED, "25000")
    assert above.metadata["remaining_points"] == "25000"
    assert (off_step.reason, off_step.metadata["limit"]) == (errors.AMOUNT_NOT_IN_STEPS, "50")
    for error in (below, above, off_step):
        assert isinstance(error, errors.FailedPrecondition)
        assert error.metadata["operation"] == operation.value
        assert error.metadata["window"] == "transaction"
        assert error.metadata["account_id"] == "u1"
    assert decide(account, command_of(operation, 25_000), rules)  # The bound itself is allowed.
    assert decide(account, command_of(operation, 100), rules)


def test_an_issue_and_a_merchants_movements_are_limited_only_when_named() -> None:
    """Issuing is never limited; a limit for members does not bind a merchant's redemption."""
    rules = index(limit(TRANSFER, high=1), limit(REDEEM, MEMBER, high=1))
    merchant = member(100, kind=MERCHANT)
    issue = DebitPoints(OPERATOR, "u1", "t1", TransferKind.ISSUE, "u2", 50, "")
    assert decide(merchant, issue, rules)
    assert decide(merchant, command_of(SELL, 50), rules)  # No MARKET_SELL limit at all.


def test_a_tier_takes_its_limit_from_the_next_command_on() -> None:
    """A gold member may give 5,000 where others may give 1,000; clearing the tier undoes it."""
    rules = index(limit(TRANSFER, high=1_000), limit(TRANSFER, tier="gold", high=5_000))
    plain = member(10_000)
    assert refusal(plain, command_of(TRANSFER, 5_000), rules).reason == errors.LIMIT_EXCEEDED
    gold = apply(plain, SetAccountTier(ACME, "u1", "gold"), rules)
    assert gold.tier == "gold"
    assert decide(gold, command_of(TRANSFER, 5_000), rules)
    cleared = apply(gold, SetAccountTier(ACME, "u1", ""), rules)
    assert refusal(cleared, command_of(TRANSFER, 5_000), rules).reason == errors.LIMIT_EXCEEDED


def test_setting_the_tier_it_has_changes_nothing_and_only_its_owner_may() -> None:
    """The same tier again: no event; another partner: NOT_OWNER."""
    gold = member(0, tier="gold")
    assert decide(gold, SetAccountTier(ACME, "u1", "gold")) == []
    assert decide(gold, SetAccountTier(OPERATOR, "u1", "")) == [AccountTierSet("u1", "")]
    other = refusal(gold, SetAccountTier(Caller(Role.PARTNER, "other"), "u1", "x"), index())
    assert other.reason == errors.NOT_OWNER


def test_other_refusals_come_before_the_limit() -> None:
    """An account that lacks the points says so, whatever the limit."""
    rules = index(limit(TRANSFER, high=10))
    error = refusal(member(5), command_of(TRANSFER, 50), rules)
    assert error.reason == errors.INSUFFICIENT_POINTS


# --- Setting the rules -------------------------------------------------------------------------


def test_rules_change_as_a_whole_at_the_version_they_were_read() -> None:
    """Version 0 -> 1 -> 2; a stale version is PROGRAM_RULES_CHANGED naming the version now."""
    first = ProgramRules((limit(high=10),))
    (event,) = program.decide(NO_PROGRAM, SetProgramRules(OPERATOR, 0, first))
    state = program.evolve(NO_PROGRAM, event)
    assert state == Program(1, first)
    stale = SetProgramRules(OPERATOR, 0, ProgramRules())
    with pytest.raises(errors.FailedPrecondition) as caught:
        program.decide(state, stale)
    assert (caught.value.reason, caught.value.metadata["version"]) == (
        errors.PROGRAM_RULES_CHANGED,
        "1",
    )
    cleared = program.evolve(state, ProgramRulesSet(ProgramRules()))
    assert cleared == Program(2, ProgramRules())
    assert not LimitIndex(cleared).limits_any


def test_only_an_operator_sets_the_rules() -> None:
    """A partner is ROLE_FORBIDDEN."""
    with pytest.raises(errors.PermissionDenied):
        program.decide(NO_PROGRAM, SetProgramRules(ACME, 0, ProgramRules()))


@pytest.mark.parametrize(
    ("limits_", "field"),
    [
        ((limit(low=-1),), "rules.limits[0]"),
        ((limit(high=limits.points_amount_max + 1),), "rules.limits[0]"),
        ((limit(low=10, high=5),), "rules.limits[0].max_points"),
        ((limit(high=5), limit(REDEEM), limit(high=7)), "rules.limits[2]"),
        ((limit(),) * (limits.program_limits_max + 1), "rules.limits"),
    ],
    ids=["negative", "above-the-command-maximum", "max-below-min", "duplicate", "too-many"],
)
def test_rules_that_cannot_be_set_name_their_field(
    limits_: tuple[TransactionLimit, ...], field: str
) -> None:
    """Each malformed set of rules is INVALID_ARGUMENT naming where it is wrong."""
    with pytest.raises(errors.InvalidArgument) as caught:
        program.decide(NO_PROGRAM, SetProgramRules(OPERATOR, 0, ProgramRules(limits_)))
    assert caught.value.metadata["field"] == field


# --- Property: no accepted command breaks its limit --------------------------------------------

_BOUND = st.sampled_from([0, 0, 1, 7, 50, 100, 1_000, 25_000])
_TIERS = st.sampled_from(["", "gold", "silver"])
_LIMITS = st.builds(
    TransactionLimit,
    st.sampled_from(list(LimitedOperation)),
    st.sampled_from([None, MEMBER, MERCHANT]),
    _TIERS,
    _BOUND,
    _BOUND,
    _BOUND,
).filter(lambda x: not x.max_points or x.max_points >= x.min_points)
_RULES = st.lists(_LIMITS, max_size=8, unique_by=lambda x: x.scope).map(
    lambda limits_: index(*limits_)
)
_STEPS = st.lists(
    st.tuples(st.sampled_from(list(LimitedOperation)), st.integers(1, 30_000), _TIERS),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(_RULES, st.sampled_from([MEMBER, MERCHANT]), _STEPS)
def test_no_accepted_command_breaks_the_limit_that_applies(
    rules: LimitIndex,
    kind: AccountKind,
    steps: list[tuple[LimitedOperation, int, str]],
) -> None:
    """Random rules, tiers and amounts: accepted within bounds, refused only for a real breach."""
    account = member(10**11, kind=kind)
    for operation, amount, tier in steps:
        account = apply(account, SetAccountTier(ACME, "u1", tier), rules)
        applies = rules.find(operation, account.kind, account.tier)
        command = command_of(operation, amount)
        outcome = _attempt(account, command, rules)
        if isinstance(outcome, Account):
            account = outcome
        elif outcome.reason == errors.ACCOUNT_KIND_MISMATCH:
            # A merchant's debit is of the wrong kind for a transfer or a redemption.
            assert kind is MERCHANT
            assert operation in {TRANSFER, REDEEM}
            continue
        else:
            assert applies is not None, outcome
            broken = {
                errors.AMOUNT_BELOW_MINIMUM: amount < applies.min_points,
                errors.LIMIT_EXCEEDED: bool(applies.max_points) and amount > applies.max_points,
                errors.AMOUNT_NOT_IN_STEPS: applies.step_points > 1
                and amount % applies.step_points != 0,
            }
            assert broken.get(outcome.reason), (outcome.reason, applies, amount)
            continue
        if applies is not None:
            assert amount >= applies.min_points
            assert not applies.max_points or amount <= applies.max_points
            assert applies.step_points <= 1 or amount % applies.step_points == 0


def _attempt(
    state: Account, command: AccountCommand, rules: LimitIndex
) -> Account | errors.DomainError:
    try:
        return apply(state, command, rules)
    except errors.DomainError as error:
        return error


# --- Windows: a rolling day and a calendar year ------------------------------------------------

HOUR = 3_600_000
NEW_YEAR_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_usage_keeps_a_day_of_hours_and_the_current_year() -> None:
    """Counted by hour and year; a day is the hour now and the 24 before; old entries go."""
    usage = Usage().add(TRANSFER, NEW_YEAR_2026 - HOUR, 10)  # 2025, last hour.
    usage = usage.add(TRANSFER, NEW_YEAR_2026, 20).add(TRANSFER, NEW_YEAR_2026 + 1, 5)
    usage = usage.add(REDEEM, NEW_YEAR_2026, 7)
    assert usage.in_day(TRANSFER, NEW_YEAR_2026) == 35
    assert usage.in_year(TRANSFER, NEW_YEAR_2026) == 25
    assert usage.in_year(TRANSFER, NEW_YEAR_2026 - 1) == 0  # 2025 left when 2026 began.
    # Whole hours: the points of 00:00-00:59 count until 00:59 the next day, never less long.
    assert usage.in_day(TRANSFER, NEW_YEAR_2026 + 24 * HOUR) == 25
    assert usage.in_day(TRANSFER, NEW_YEAR_2026 + 25 * HOUR - 1) == 25
    assert usage.in_day(TRANSFER, NEW_YEAR_2026 + 25 * HOUR) == 0
    later = usage.add(TRANSFER, NEW_YEAR_2026 + 30 * HOUR, 1)
    assert later.hours == ((TRANSFER, (NEW_YEAR_2026 + 30 * HOUR) // HOUR, 1),)  # Older: gone.
    assert [year for _, year, _ in later.years] == [2026, 2026]


def debited(state: Account, amount: int, at_ms: int, rules: LimitIndex) -> Account:
    """The account after a transfer debit of `amount` decided at `at_ms`."""
    for event in decide(state, command_of(TRANSFER, amount), rules, at_ms):
        state = evolve(state, event)
    return state


def test_a_daily_cap_counts_a_rolling_day_and_names_what_is_left() -> None:
    """100 a day: 60 then 40 pass, 1 more is refused until the first hour leaves the window."""
    rules = index(limit(TRANSFER, daily=100))
    start = NEW_YEAR_2026 + 10 * HOUR
    account = debited(member(1_000), 60, start, rules)
    account = debited(account, 30, start + 5 * HOUR, rules)
    refused = refusal_at(account, command_of(TRANSFER, 11), rules, start + 6 * HOUR)
    assert (refused.reason, refused.metadata["window"]) == (errors.LIMIT_EXCEEDED, "rolling_24h")
    assert (refused.metadata["limit"], refused.metadata["remaining_points"]) == ("100", "10")
    assert decide(account, command_of(TRANSFER, 10), rules, start + 6 * HOUR)
    assert refusal_at(account, command_of(TRANSFER, 11), rules, start + 24 * HOUR)
    assert decide(account, command_of(TRANSFER, 70), rules, start + 25 * HOUR)


def test_a_yearly_cap_starts_again_on_the_first_of_january() -> None:
    """1,000 a year: spent in December, refused on 31 December, allowed on 1 January."""
    rules = index(limit(REDEEM, yearly=1_000))
    account = member(5_000)
    redeem = DebitPoints(ACME, "u1", "t1", TransferKind.REDEEM, "m1", 1_000, "")
    for event in decide(account, redeem, rules, NEW_YEAR_2026 - 30 * 24 * HOUR):
        account = evolve(account, event)
    refused = refusal_at(account, redeem, rules, NEW_YEAR_2026 - 1)
    assert (refused.metadata["window"], refused.metadata["remaining_points"]) == (
        "calendar_year",
        "0",
    )
    assert decide(account, redeem, rules, NEW_YEAR_2026)


def test_points_held_for_selling_and_being_bought_count_until_released() -> None:
    """A SELL cap counts what is held now; a BUY cap what is being bought; releases free them."""
    rules = index(limit(SELL, daily=100), limit(BUY, yearly=100))
    account = apply(member(1_000), command_of(SELL, 60), rules)
    assert refusal_at(account, command_of(SELL, 41), rules, 0).metadata["remaining_points"] == "40"
    released = apply(account, ReleasePoints("u1", "o1", "", 60), rules)
    assert decide(released, command_of(SELL, 100), rules)
    buying = apply(member(0), command_of(BUY, 100), rules)
    assert refusal_at(buying, command_of(BUY, 1), rules, 0).reason == errors.LIMIT_EXCEEDED
    bought = apply(buying, BuyPoints("u1", "tr1", "o1", 100), rules)  # Now counted as bought.
    assert bought.usage.in_year(BUY, 0) == 100
    assert refusal_at(bought, command_of(BUY, 1), rules, 0).reason == errors.LIMIT_EXCEEDED


def refusal_at(
    state: Account, command: AccountCommand, rules: LimitIndex, now_ms: int
) -> errors.DomainError:
    """Return the DomainError `command` meets on `state` under `rules` at `now_ms`."""
    with pytest.raises(errors.DomainError) as caught:
        decide(state, command, rules, now_ms)
    return caught.value


_WINDOW_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["transfer", "sell", "release", "settle"]),
        st.integers(1, 60),
        st.integers(0, 8 * HOUR),  # Time passing before the step.
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_WINDOW_STEPS, st.integers(0, 366 * 24 * HOUR))
def test_windows_never_count_less_than_a_reference_model(
    steps: list[tuple[str, int, int]], start_offset: int
) -> None:
    """Random transfers, holds, releases and sales over time: the caps are never passed.

    The reference model keeps every accepted movement with its exact time; after each step,
    the exact points of the last 24 hours (plus what is held) and of the calendar year are
    within the caps.
    """
    caps = {"day": 150, "year": 400}
    rules = index(
        limit(TRANSFER, daily=caps["day"], yearly=caps["year"]),
        limit(SELL, daily=caps["day"], yearly=caps["year"]),
    )
    now = NEW_YEAR_2026 - 200 * 24 * HOUR + start_offset
    account = member(10**6)
    moved: dict[LimitedOperation, list[tuple[int, int]]] = {TRANSFER: [], SELL: []}
    for action, drawn, elapsed in steps:
        now += elapsed
        amount = min(drawn, account.held_points) if action in {"release", "settle"} else drawn
        if not amount:
            continue
        command: AccountCommand
        if action == "release":
            command = ReleasePoints("u1", "o1", "", amount)
        elif action == "settle":
            command = SellPoints("u1", "tr1", "o1", amount)
        else:
            command = command_of(TRANSFER if action == "transfer" else SELL, amount)
        outcome = _decided(account, command, rules, now)
        if isinstance(outcome, errors.DomainError):
            assert outcome.reason == errors.LIMIT_EXCEEDED, outcome
            continue
        for event in outcome:
            account = evolve(account, event)
        if action == "transfer":
            moved[TRANSFER].append((now, amount))
        elif action == "settle":
            moved[SELL].append((now, amount))
        for operation, pending in ((TRANSFER, 0), (SELL, account.held_points)):
            in_day = sum(p for at, p in moved[operation] if at > now - 24 * HOUR)
            in_year = sum(p for at, p in moved[operation] if year_of(at) == year_of(now))
            assert in_day + pending <= caps["day"], (operation, in_day, pending)
            assert in_year + pending <= caps["year"], (operation, in_year, pending)


def _decided(
    state: Account, command: AccountCommand, rules: LimitIndex, now_ms: int
) -> list[AccountEvent] | errors.DomainError:
    try:
        return decide(state, command, rules, now_ms)
    except errors.DomainError as error:
        return error


def test_a_snapshot_keeps_the_tier_and_what_the_windows_count() -> None:
    """An account restored from its snapshot decides exactly as the one it was taken from."""
    rules = index(limit(TRANSFER, daily=100, yearly=150))
    account = apply(member(1_000), SetAccountTier(ACME, "u1", "gold"), rules)
    account = debited(account, 70, NEW_YEAR_2026, rules)
    account = debited(account, 30, NEW_YEAR_2026 + 30 * HOUR, rules)
    snapshot = snapshots.to_snapshot("account-u1", account, 5, 42)
    restored = snapshots.from_snapshot(snapshot)
    assert restored == (account, 5, 42)
    refused = refusal_at(restored[0], command_of(TRANSFER, 51), rules, NEW_YEAR_2026 + 31 * HOUR)
    assert (refused.metadata["window"], refused.metadata["remaining_points"]) == (
        "calendar_year",
        "50",
    )
