"""The account aggregate: every rule, every rejection reason, and conservation (I1)."""

from __future__ import annotations

import pytest

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.domain.account import Account, check_credit, decide, evolve
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
    UnfreezeAccount,
)
from pointex.server.domain.events import (
    AccountClosed,
    AccountOpened,
    PointsCredited,
    PointsDebited,
    PointsMinted,
)
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    AccountStatus,
    Caller,
    Role,
    TimeInForce,
    TransferKind,
)

ACME = Caller(Role.PARTNER, "acme")
OTHER = Caller(Role.PARTNER, "other")
PROVIDER = Caller(Role.PAYMENT_PROVIDER, "")


def apply(state: Account | None, command: AccountCommand) -> Account:
    """Decide `command` on `state` and evolve through its events."""
    for event in decide(state, command):
        state = evolve(state, event)
    assert state is not None
    return state


def merchant(points: int = 0) -> Account:
    """An open merchant of acme holding `points`."""
    state = apply(None, OpenAccount(ACME, "m1", AccountKind.MERCHANT, "acme", "Shop"))
    if points:
        state = apply(state, MintPoints(OPERATOR, "m1", points, "funding"))
    return state


def member(points: int = 0, account_id: str = "u1") -> Account:
    """An open member of acme holding `points` (credited by an issue)."""
    state = apply(None, OpenAccount(ACME, account_id, AccountKind.MEMBER, "acme", "Ann"))
    if points:
        credit = CreditPoints(account_id, "t0", TransferKind.ISSUE, "m1", points, "")
        state = apply(state, credit)
    return state


def debit(
    account_id: str,
    amount: int,
    movement: TransferKind = TransferKind.TRANSFER,
    caller: Caller = ACME,
    to: str = "u2",
) -> DebitPoints:
    """A debit step of a movement from `account_id`."""
    return DebitPoints(caller, account_id, "t1", movement, to, amount, "gift")


def rejected(state: Account | None, command: AccountCommand) -> errors.DomainError:
    """Return the DomainError `command` meets on `state`."""
    with pytest.raises(errors.DomainError) as caught:
        decide(state, command)
    return caught.value


def test_open_account_starts_empty_and_open() -> None:
    """Opening yields AccountOpened; the account is OPEN with zero balances."""
    events = decide(None, OpenAccount(ACME, "u1", AccountKind.MEMBER, "acme", "Ann"))
    assert events == [AccountOpened("u1", AccountKind.MEMBER, "acme", "Ann")]
    state = evolve(None, events[0])
    assert (state.status, state.available_points, state.held_points) == (AccountStatus.OPEN, 0, 0)


def test_account_already_exists() -> None:
    """Opening an existing account is refused with ACCOUNT_ALREADY_EXISTS."""
    error = rejected(member(), OpenAccount(ACME, "u1", AccountKind.MEMBER, "acme", "Ann"))
    assert isinstance(error, errors.AlreadyExists)
    assert error.reason == errors.ACCOUNT_ALREADY_EXISTS


def test_partner_opens_only_for_itself() -> None:
    """A partner opening an account owned by another partner gets NOT_OWNER."""
    error = rejected(None, OpenAccount(ACME, "u1", AccountKind.MEMBER, "other", "Ann"))
    assert isinstance(error, errors.PermissionDenied)
    assert error.reason == errors.NOT_OWNER


def test_provider_cannot_open_accounts() -> None:
    """A payment provider may not open accounts: ROLE_FORBIDDEN."""
    error = rejected(None, OpenAccount(PROVIDER, "u1", AccountKind.MEMBER, "", "Ann"))
    assert error.reason == errors.ROLE_FORBIDDEN


def test_mint_adds_points_to_a_merchant() -> None:
    """Minting credits the merchant's available balance."""
    assert merchant(500).available_points == 500


def test_mint_is_operator_only() -> None:
    """A partner minting gets ROLE_FORBIDDEN and nothing changes."""
    error = rejected(merchant(), MintPoints(ACME, "m1", 5, ""))
    assert isinstance(error, errors.PermissionDenied)
    assert error.reason == errors.ROLE_FORBIDDEN


def test_mint_into_a_member_is_a_kind_mismatch() -> None:
    """Points are minted only into merchants: ACCOUNT_KIND_MISMATCH."""
    assert rejected(member(), MintPoints(OPERATOR, "u1", 5, "")).reason == (
        errors.ACCOUNT_KIND_MISMATCH
    )


@pytest.mark.parametrize("amount", [0, -1, -(2**63)])
def test_amount_not_positive(amount: int) -> None:
    """Zero and negative amounts are INVALID_ARGUMENT / AMOUNT_NOT_POSITIVE for every movement."""
    for command in (
        MintPoints(OPERATOR, "m1", amount, ""),
        BurnPoints(OPERATOR, "m1", amount, ""),
        debit("m1", amount, TransferKind.ISSUE),
    ):
        error = rejected(merchant(100), command)
        assert isinstance(error, errors.InvalidArgument)
        assert error.reason == errors.AMOUNT_NOT_POSITIVE


def test_amount_too_large() -> None:
    """An amount above points_amount_max is AMOUNT_TOO_LARGE."""
    error = rejected(merchant(), MintPoints(OPERATOR, "m1", limits.points_amount_max + 1, ""))
    assert error.reason == errors.AMOUNT_TOO_LARGE


def test_balance_ceiling_exceeded() -> None:
    """Repeated mints stop at points_balance_max with BALANCE_CEILING_EXCEEDED."""
    state = merchant()
    while state.available_points + limits.points_amount_max <= limits.points_balance_max:
        state = apply(state, MintPoints(OPERATOR, "m1", limits.points_amount_max, ""))
    error = rejected(state, MintPoints(OPERATOR, "m1", limits.points_amount_max, ""))
    assert error.reason == errors.BALANCE_CEILING_EXCEEDED
    assert state.available_points <= limits.points_balance_max


def test_account_not_found() -> None:
    """Every command on an account that was never opened is ACCOUNT_NOT_FOUND."""
    for command in (
        MintPoints(OPERATOR, "x", 1, ""),
        debit("x", 1),
        FreezeAccount(OPERATOR, "x", ""),
        CloseAccount(OPERATOR, "x", ""),
        ReturnPoints("x", "t1", TransferKind.TRANSFER, "u2", 1),
    ):
        error = rejected(None, command)
        assert isinstance(error, errors.NotFound)
        assert error.reason == errors.ACCOUNT_NOT_FOUND


def test_burn_retires_available_points() -> None:
    """Burning takes points out of the merchant; more than available is INSUFFICIENT_POINTS."""
    state = apply(merchant(100), BurnPoints(OPERATOR, "m1", 40, ""))
    assert state.available_points == 60
    assert rejected(state, BurnPoints(OPERATOR, "m1", 61, "")).reason == (
        errors.INSUFFICIENT_POINTS
    )


def test_debit_takes_points_and_credit_gives_them() -> None:
    """A transfer's debit lowers the source; the credit raises the destination."""
    source = apply(member(50), debit("u1", 30))
    target = apply(member(0, "u2"), CreditPoints("u2", "t1", TransferKind.TRANSFER, "u1", 30, ""))
    assert (source.available_points, target.available_points) == (20, 30)


def test_insufficient_points() -> None:
    """Debiting more than available is FAILED_PRECONDITION / INSUFFICIENT_POINTS."""
    error = rejected(member(10), debit("u1", 11))
    assert isinstance(error, errors.FailedPrecondition)
    assert error.reason == errors.INSUFFICIENT_POINTS
    assert error.metadata["available_points"] == "10"


def test_same_account() -> None:
    """A movement from an account to itself is SAME_ACCOUNT."""
    assert rejected(member(10), debit("u1", 1, to="u1")).reason == errors.SAME_ACCOUNT


def test_partner_moves_only_its_own_accounts() -> None:
    """Another partner debiting acme's member gets NOT_OWNER; the operator may."""
    assert rejected(member(10), debit("u1", 1, caller=OTHER)).reason == errors.NOT_OWNER
    assert decide(member(10), debit("u1", 1, caller=OPERATOR))


@pytest.mark.parametrize(
    ("movement", "source_kind"),
    [
        (TransferKind.ISSUE, AccountKind.MERCHANT),
        (TransferKind.REDEEM, AccountKind.MEMBER),
        (TransferKind.TRANSFER, AccountKind.MEMBER),
    ],
)
def test_movement_kind_rules(movement: TransferKind, source_kind: AccountKind) -> None:
    """Issue needs a merchant source and member target; redeem and transfer a member source."""
    wrong_source = merchant(10) if source_kind is AccountKind.MEMBER else member(10)
    error = rejected(wrong_source, debit(wrong_source.account_id, 1, movement))
    assert error.reason == errors.ACCOUNT_KIND_MISMATCH
    target_kind = AccountKind.MERCHANT if movement is TransferKind.REDEEM else AccountKind.MEMBER
    wrong_target = merchant() if target_kind is AccountKind.MEMBER else member()
    credit = CreditPoints(wrong_target.account_id, "t1", movement, "x", 1, "")
    assert rejected(wrong_target, credit).reason == errors.ACCOUNT_KIND_MISMATCH


def test_frozen_account_sends_nothing_but_receives() -> None:
    """A frozen account refuses debits (ACCOUNT_FROZEN) and still accepts credits."""
    state = apply(member(10), FreezeAccount(ACME, "u1", "fraud check"))
    assert state.status is AccountStatus.FROZEN
    assert rejected(state, debit("u1", 1)).reason == errors.ACCOUNT_FROZEN
    credited = apply(state, CreditPoints("u1", "t2", TransferKind.TRANSFER, "u2", 5, ""))
    assert credited.available_points == 15


def test_repeated_freeze_unfreeze_and_close_are_no_ops() -> None:
    """Freezing a frozen, unfreezing an open or closing a closed account yields no events."""
    frozen = apply(member(), FreezeAccount(ACME, "u1", ""))
    assert decide(frozen, FreezeAccount(ACME, "u1", "")) == []
    assert decide(member(), UnfreezeAccount(ACME, "u1", "")) == []
    assert apply(frozen, UnfreezeAccount(ACME, "u1", "")).status is AccountStatus.OPEN
    closed = apply(member(), CloseAccount(ACME, "u1", ""))
    assert decide(closed, CloseAccount(ACME, "u1", "")) == []


def test_only_an_operator_lifts_an_operators_freeze() -> None:
    """A partner cannot unfreeze what an operator froze (ROLE_FORBIDDEN); the operator can."""
    frozen = apply(member(), FreezeAccount(OPERATOR, "u1", "compliance"))
    assert rejected(frozen, UnfreezeAccount(ACME, "u1", "")).reason == errors.ROLE_FORBIDDEN
    assert apply(frozen, UnfreezeAccount(OPERATOR, "u1", "")).status is AccountStatus.OPEN


def test_freeze_needs_owner_or_operator() -> None:
    """Another partner freezing acme's account gets NOT_OWNER."""
    assert rejected(member(), FreezeAccount(OTHER, "u1", "")).reason == errors.NOT_OWNER


def test_close_only_with_zero_balance() -> None:
    """Closing with points is ACCOUNT_NOT_EMPTY; an empty account closes for good."""
    assert rejected(member(1), CloseAccount(ACME, "u1", "")).reason == errors.ACCOUNT_NOT_EMPTY
    closed = apply(member(), CloseAccount(ACME, "u1", "moved away"))
    assert decide(member(), CloseAccount(ACME, "u1", "x")) == [AccountClosed("u1", "x")]
    assert closed.status is AccountStatus.CLOSED


def test_closed_account_does_nothing() -> None:
    """A closed account refuses debits, credits and freezing: ACCOUNT_CLOSED."""
    closed = apply(member(), CloseAccount(ACME, "u1", ""))
    for command in (
        debit("u1", 1),
        CreditPoints("u1", "t1", TransferKind.TRANSFER, "u2", 1, ""),
        FreezeAccount(ACME, "u1", ""),
        UnfreezeAccount(ACME, "u1", ""),
    ):
        assert rejected(closed, command).reason == errors.ACCOUNT_CLOSED


def test_check_credit_reports_what_the_credit_would_meet() -> None:
    """check_credit raises the credit's own rejection without producing events."""
    credit = CreditPoints("u1", "t1", TransferKind.TRANSFER, "u2", 1, "")
    assert check_credit(member(), credit).account_id == "u1"
    with pytest.raises(errors.NotFound):
        check_credit(None, credit)


def test_return_is_never_refused_for_an_existing_account() -> None:
    """A refund lands even on a frozen account: compensation must always complete."""
    frozen = apply(apply(member(10), debit("u1", 10)), FreezeAccount(ACME, "u1", ""))
    assert (
        apply(frozen, ReturnPoints("u1", "t1", TransferKind.TRANSFER, "u2", 10)).available_points
        == 10
    )


def test_events_carry_the_movement() -> None:
    """Debit and credit events name the transfer, the movement and the counterparty."""
    [event] = decide(member(5), debit("u1", 5))
    assert event == PointsDebited("u1", "t1", TransferKind.TRANSFER, "u2", 5, "gift", 0)
    [credit] = decide(member(), CreditPoints("u1", "t9", TransferKind.ISSUE, "m1", 3, "r"))
    assert credit == PointsCredited("u1", "t9", TransferKind.ISSUE, "m1", 3, "r", 3)


def test_evolve_rejects_events_before_opening() -> None:
    """Applying a movement to an unopened account is a programmer error (assertion)."""
    with pytest.raises(AssertionError):
        evolve(None, PointsMinted("m1", 1, "", 1))


# --- Escrow for the market: hold, release, sell, buy ----------------------------------------


def _hold(amount: int, caller: Caller = ACME) -> HoldPoints:
    return HoldPoints(caller, "m1", "o1", "PTS-CNY", amount, 100, TimeInForce.GTC, "")


def test_a_hold_moves_available_to_held_and_a_release_moves_it_back() -> None:
    """Hold 30 of 100: 70 + 30 held; release 10: 80 + 20; the total never changes."""
    state = apply(merchant(100), _hold(30))
    assert (state.available_points, state.held_points) == (70, 30)
    state = apply(state, ReleasePoints("m1", "o1", "", 10))
    assert (state.available_points, state.held_points) == (80, 20)
    assert state.total_points == 100


def test_a_sale_delivers_from_held_and_a_purchase_credits_available() -> None:
    """Sell 20 of the 30 held: held 10; the buyer receives them into available."""
    seller = apply(apply(merchant(100), _hold(30)), SellPoints("m1", "t1", "o1", 20))
    assert (seller.available_points, seller.held_points) == (70, 10)
    buyer = apply(member(0), BuyPoints("u1", "t1", "o2", 20))
    assert buyer.available_points == 20


@pytest.mark.parametrize(
    ("state", "command", "reason"),
    [
        (merchant(10), _hold(11), errors.INSUFFICIENT_POINTS),
        (merchant(10), _hold(0), errors.AMOUNT_NOT_POSITIVE),
        (merchant(10), _hold(5, OTHER), errors.NOT_OWNER),
        (None, _hold(5), errors.ACCOUNT_NOT_FOUND),
    ],
)
def test_a_hold_is_refused_with_its_reason(
    state: Account | None, command: HoldPoints, reason: str
) -> None:
    """Too few points, a non-positive amount, another partner, no account: refused."""
    with pytest.raises(errors.DomainError) as refused:
        decide(state, command)
    assert refused.value.reason == reason


def test_a_frozen_account_cannot_hold_but_still_releases() -> None:
    """Freezing stops new SELL orders; points already held still come back."""
    held = apply(merchant(50), _hold(20))
    frozen = apply(held, FreezeAccount(OPERATOR, "m1", "check"))
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(frozen, _hold(5))
    assert refused.value.reason == errors.ACCOUNT_FROZEN
    assert apply(frozen, ReleasePoints("m1", "o1", "", 20)).available_points == 50


def test_an_account_holding_points_cannot_close() -> None:
    """Held points count: an account with only held points is not empty."""
    held = apply(merchant(20), _hold(20))
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(held, CloseAccount(ACME, "m1", ""))
    assert refused.value.reason == errors.ACCOUNT_NOT_EMPTY


def test_a_closed_account_cannot_receive_bought_points() -> None:
    """A purchase needs an account that is not closed (it could hold nothing)."""
    closed = apply(member(0), CloseAccount(ACME, "u1", "moving"))
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(closed, BuyPoints("u1", "t1", "o2", 5))
    assert refused.value.reason == errors.ACCOUNT_CLOSED


def _reserve(amount: int, caller: Caller = ACME, order_id: str = "o2") -> ReserveBuy:
    return ReserveBuy(caller, "u1", order_id, "PTS-CNY", amount, 100, TimeInForce.GTC, "")


def test_a_buy_order_counts_as_buying_until_bought_or_released() -> None:
    """Reserve 30 and 20; 12 bought, 8 released with a trade, the rest released: 0 buying."""
    state = apply(apply(member(0), _reserve(30)), _reserve(20, order_id="o3"))
    assert (state.buying_points, state.available_points, state.held_points) == (50, 0, 0)
    state = apply(state, BuyPoints("u1", "t1", "o2", 12))
    assert (state.buying_points, state.available_points) == (38, 12)
    state = apply(state, ReleaseBuy("u1", "o2", "t2", 8))
    state = apply(state, ReleaseBuy("u1", "o2", "", 10))
    assert state.buying_points == 20
    state = apply(state, ReleaseBuy("u1", "o3", "", 20))
    assert (state.buying_points, state.available_points) == (0, 12)


def test_an_account_that_is_buying_cannot_close_and_a_closed_one_cannot_buy() -> None:
    """The close and the BUY are decided by one actor: whichever comes first wins."""
    buying = apply(member(0), _reserve(5))
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(buying, CloseAccount(ACME, "u1", ""))
    assert refused.value.reason == errors.ACCOUNT_NOT_EMPTY
    assert refused.value.metadata["buying_points"] == "5"
    closed = apply(apply(buying, ReleaseBuy("u1", "o2", "", 5)), CloseAccount(ACME, "u1", ""))
    assert closed.status is AccountStatus.CLOSED
    with pytest.raises(errors.FailedPrecondition) as refused:
        decide(closed, _reserve(5))
    assert refused.value.reason == errors.ACCOUNT_CLOSED


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (_reserve(0), errors.AMOUNT_NOT_POSITIVE),
        (_reserve(limits.points_amount_max + 1), errors.AMOUNT_TOO_LARGE),
        (_reserve(5, OTHER), errors.NOT_OWNER),
    ],
)
def test_a_reservation_is_refused_with_its_reason(command: ReserveBuy, reason: str) -> None:
    """A non-positive or too large quantity, another partner's account: refused."""
    assert rejected(member(0), command).reason == reason
    assert rejected(None, _reserve(5)).reason == errors.ACCOUNT_NOT_FOUND


def test_a_release_never_takes_more_than_is_being_bought() -> None:
    """An order from before reservations reserved nothing: its release records 0."""
    events = decide(member(0), ReleaseBuy("u1", "o9", "", 7))
    assert [(e.quantity_points, e.buying_points) for e in events] == [(0, 0)]  # type: ignore[union-attr]
    unreserved = apply(member(0), BuyPoints("u1", "t9", "o9", 7))
    assert (unreserved.buying_points, unreserved.available_points) == (0, 7)


def test_a_reversal_takes_back_from_a_frozen_account_but_never_more_than_it_has() -> None:
    """REVERSE_ISSUE debits a frozen member of another partner; short: POINTS_ALREADY_SPENT."""
    frozen = apply(member(30), FreezeAccount(OPERATOR, "u1", "fraud"))
    take_back = debit("u1", 30, TransferKind.REVERSE_ISSUE, caller=OTHER, to="m1")
    (event,) = decide(frozen, take_back)
    assert isinstance(event, PointsDebited)
    assert event.available_points == 0
    error = rejected(frozen, debit("u1", 31, TransferKind.REVERSE_ISSUE, caller=OTHER, to="m1"))
    assert error.reason == errors.POINTS_ALREADY_SPENT
    assert (error.metadata["available_points"], error.metadata["required_points"]) == ("30", "31")
