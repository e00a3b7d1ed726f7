"""Expiry in lots: FIFO spending, lots that travel with transfers and sales, lapsing, notices.

The account aggregate is checked against a reference model that keeps every point on its
own, with the moment it was earned and the moment it lapses, and spends the oldest first.
"""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from pointex.cli import watch
from pointex.server import limits
from pointex.server.domain import errors, lots, program
from pointex.server.domain.account import Account, decide, evolve
from pointex.server.domain.commands import (
    AccountCommand,
    ActivatePoints,
    BuyPoints,
    CreditPoints,
    DebitPoints,
    ExpirePoints,
    HoldPoints,
    MintPoints,
    OpenAccount,
    ReleasePoints,
    ReturnPoints,
    SellPoints,
)
from pointex.server.domain.events import (
    NEVER,
    AccountEvent,
    PointsActivated,
    PointsCredited,
    PointsDebited,
    PointsExpired,
    PointsExpiringSoon,
    PointsSold,
    TransferInitiated,
)
from pointex.server.domain.lots import ExpiryPolicy, Lot
from pointex.server.domain.processes import transfer
from pointex.server.domain.program import LimitIndex, Program, ProgramRules, TransferFee
from pointex.server.domain.values import (
    OPERATOR,
    AccountKind,
    Caller,
    Instant,
    Role,
    Span,
    TimeInForce,
    TransferKind,
)
from pointex.v1 import query_service_pb2

ACME = Caller(Role.PARTNER, "acme")
DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def rules(lifetime_ms: int, notice_ms: int = 0) -> LimitIndex:
    """The rules in force with an expiry policy."""
    policy = ExpiryPolicy(Span(lifetime_ms), Span(notice_ms))
    return LimitIndex(Program(1, ProgramRules(expiry=policy)))


def apply(
    state: Account | None, command: AccountCommand, at: int = T0, ruled: LimitIndex | None = None
) -> Account:
    """Decide `command` at `at` under `ruled` and evolve through its events."""
    for event in decide(state, command, ruled or rules(0), at):
        state = evolve(state, event)
    assert state is not None
    return state


def member(account_id: str = "u1") -> Account:
    """An open, empty member account of acme."""
    return apply(None, OpenAccount(ACME, account_id, AccountKind.MEMBER, "acme", ""))


def issue(state: Account, points: int, at: int, ruled: LimitIndex) -> Account:
    """Credit an issue of `points` earned at `at`."""
    credit = CreditPoints(state.account_id, f"i{at}", TransferKind.ISSUE, "m1", points, "")
    return apply(state, credit, at, ruled)


def debit(state: Account, points: int, at: int, to: str = "u2") -> tuple[Account, PointsDebited]:
    """Debit a transfer of `points`; return the account and its event."""
    command = DebitPoints(ACME, state.account_id, f"t{at}", TransferKind.TRANSFER, to, points, "")
    (event,) = decide(state, command, rules(0), at)
    assert isinstance(event, PointsDebited)
    return evolve(state, event), event


# --- The lots themselves --------------------------------------------------------------------


def test_an_issue_under_a_policy_makes_a_lot_that_lapses_a_lifetime_later() -> None:
    """An issue under a policy makes a lot that lapses a lifetime later."""
    state = issue(member(), 100, T0 + 1_234, rules(30 * DAY))
    assert state.lots == (Lot(Instant(T0 + 1_000), Instant(T0 + 1_000 + 30 * DAY), 100),)
    assert state.available_points == 100


def test_without_a_policy_points_keep_no_lot_and_never_lapse() -> None:
    """Without a policy points keep no lot and never lapse."""
    state = issue(member(), 100, T0, rules(0))
    assert state.lots == ()
    after = apply(state, ExpirePoints("u1"), T0 + 10_000 * DAY)
    assert after.available_points == 100


def test_points_earned_in_one_second_share_a_lot() -> None:
    """Points earned in one second share a lot."""
    state = issue(member(), 10, T0 + 1, rules(DAY))
    state = issue(state, 5, T0 + 999, rules(DAY))
    assert state.lots == (Lot(Instant(T0), Instant(T0 + DAY), 15),)


def test_spending_takes_points_that_never_lapse_first_then_the_oldest_lot() -> None:
    """Spending takes points that never lapse first then the oldest lot."""
    state = issue(member(), 50, T0, rules(0))  # Before the policy: never lapses.
    state = issue(state, 30, T0 + DAY, rules(10 * DAY))
    state = issue(state, 20, T0 + 2 * DAY, rules(10 * DAY))
    state, event = debit(state, 60, T0 + 3 * DAY)
    assert event.lots == (Lot(Instant(T0 + DAY), Instant(T0 + 11 * DAY), 10),)
    assert [lot.amount_points for lot in state.lots] == [20, 20]


def test_a_lot_lapses_at_its_time_and_not_before() -> None:
    """A lot lapses at its time and not before."""
    state = issue(member(), 40, T0, rules(DAY))
    early = decide(state, ExpirePoints("u1"), rules(DAY), T0 + DAY - 1)
    assert early == []
    (expired,) = decide(state, ExpirePoints("u1"), rules(DAY), T0 + DAY)
    assert isinstance(expired, PointsExpired)
    assert (expired.amount_points, expired.available_points) == (40, 0)
    assert evolve(state, expired).lots == ()


def test_held_points_do_not_lapse_until_released() -> None:
    """Held points do not lapse until released."""
    state = issue(member(), 100, T0, rules(DAY))
    hold = HoldPoints(ACME, "u1", "o1", "pts-cny", 70, 100, TimeInForce.GTC, "")
    state = apply(state, hold, T0 + 1)
    state = apply(state, ExpirePoints("u1"), T0 + DAY)
    assert (state.available_points, state.held_points) == (0, 70)
    assert lots.points(state.lots) == 70  # The held part is still due.
    state = apply(state, ReleasePoints("u1", "o1", "", 70), T0 + DAY + 1)
    state = apply(state, ExpirePoints("u1"), T0 + DAY + 2)
    assert (state.available_points, state.held_points, state.lots) == (0, 0, ())


def test_sold_points_keep_their_lots_at_the_buyer() -> None:
    """Sold points keep their lots at the buyer."""
    seller = issue(member("u1"), 100, T0, rules(DAY))
    hold = HoldPoints(ACME, "u1", "o1", "pts-cny", 30, 100, TimeInForce.GTC, "")
    seller = apply(seller, hold, T0 + 1)
    (sold,) = decide(seller, SellPoints("u1", "tr1", "o1", 30), rules(0), T0 + 2)
    assert isinstance(sold, PointsSold)
    assert sold.lots == (Lot(Instant(T0), Instant(T0 + DAY), 30),)
    buyer = apply(member("u2"), BuyPoints("u2", "tr1", "o2", 30, sold.lots), T0 + 3)
    assert buyer.lots == sold.lots


def test_a_returned_transfer_gets_its_lots_back() -> None:
    """A returned transfer gets its lots back."""
    state = issue(member(), 100, T0, rules(DAY))
    state, event = debit(state, 100, T0 + 1)
    assert state.lots == ()
    back = ReturnPoints("u1", event.transfer_id, TransferKind.TRANSFER, "u2", 100, event.lots)
    state = apply(state, back, T0 + 2)
    assert state.lots == (Lot(Instant(T0), Instant(T0 + DAY), 100),)


def test_activated_points_are_earned_when_they_activate() -> None:
    """Activated points are earned when they activate."""
    ruled = rules(DAY)
    pending = CreditPoints(
        "u1", "i1", TransferKind.ISSUE, "m1", 25, "", activates_at=Instant(T0 + 5_000)
    )
    state = apply(member(), pending, T0, ruled)
    assert state.lots == ()
    (activated,) = decide(state, ActivatePoints("u1", "i1"), ruled, T0 + 5_000)
    assert isinstance(activated, PointsActivated)
    assert activated.lots == (Lot(Instant(T0 + 5_000), Instant(T0 + 5_000 + DAY), 25),)


def test_arriving_points_pay_off_a_debt_with_their_oldest_first() -> None:
    """Arriving points pay off a debt with their oldest first."""
    state = dataclasses.replace(member(), available_points=-30)
    incoming = (
        Lot(Instant(T0), Instant(T0 + DAY), 20),
        Lot(Instant(T0 + 1), Instant(T0 + DAY), 40),
    )
    state = apply(
        state, CreditPoints("u1", "t1", TransferKind.TRANSFER, "u2", 60, "", NEVER, incoming)
    )
    assert state.available_points == 30
    assert state.lots == (Lot(Instant(T0 + 1), Instant(T0 + DAY), 30),)


def test_a_merchant_keeps_no_lots() -> None:
    """A merchant keeps no lots."""
    opened = apply(None, OpenAccount(OPERATOR, "m1", AccountKind.MERCHANT, "acme", ""))
    merchant = apply(opened, MintPoints(OPERATOR, "m1", 100, ""))
    incoming = (Lot(Instant(T0), Instant(T0 + DAY), 10),)
    credit = CreditPoints("m1", "r1", TransferKind.REDEEM, "u1", 10, "", NEVER, incoming)
    (credited,) = decide(merchant, credit, rules(DAY), T0)
    assert isinstance(credited, PointsCredited)
    assert credited.lots == ()


def test_the_member_is_told_once_before_lots_lapse() -> None:
    """The member is told once before lots lapse."""
    ruled = rules(10 * DAY, notice_ms=3 * DAY)
    state = issue(member(), 10, T0, ruled)
    state = issue(state, 5, T0 + DAY, ruled)
    assert decide(state, ExpirePoints("u1"), ruled, T0 + 7 * DAY - 1) == []
    (soon,) = decide(state, ExpirePoints("u1"), ruled, T0 + 7 * DAY)
    assert isinstance(soon, PointsExpiringSoon)
    assert (soon.amount_points, soon.first_expires_at) == (10, Instant(T0 + 10 * DAY))
    state = evolve(state, soon)
    assert decide(state, ExpirePoints("u1"), ruled, T0 + 7 * DAY + 1) == []
    assert lots.next_deadline(state.lots, state.noticed_through_ms, Span(3 * DAY)) == T0 + 8 * DAY
    (later,) = decide(state, ExpirePoints("u1"), ruled, T0 + 8 * DAY)
    assert isinstance(later, PointsExpiringSoon)
    assert later.amount_points == 5


def test_an_account_keeps_at_most_the_bound_of_lots_and_none_lapses_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An account keeps at most the bound of lots and none lapses early."""
    monkeypatch.setattr(limits, "lots_per_account_max", 3)
    state = member()
    for i in range(5):
        state = issue(state, 1, T0 + i * 1_000, rules(DAY))
    assert len(state.lots) == 3
    assert lots.points(state.lots) == 5
    latest = T0 + 4_000 + DAY
    assert max(lot.expires_at.unix_ms for lot in state.lots) == latest


# --- Against the reference model --------------------------------------------------------------

# A point of the model: (earned ms, lapses ms); points that never lapse are (-1, 0) and sort
# first. Each account's points are kept sorted: the oldest first.
Point = tuple[int, int]
FOREVER: Point = (-1, 0)


def _model_take(points: list[Point], amount: int) -> list[Point]:
    taken = points[:amount]
    del points[:amount]
    return taken


def _model_lots(points: list[Point]) -> tuple[Lot, ...]:
    merged: dict[Point, int] = {}
    for point in points:
        if point != FOREVER:
            merged[point] = merged.get(point, 0) + 1
    return tuple(Lot(Instant(e), Instant(x), n) for (e, x), n in sorted(merged.items()))


operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["issue", "issue_forever", "give", "give_back", "redeem", "reverse", "expire"]
        ),
        st.integers(min_value=0, max_value=1),  # which member
        st.integers(min_value=1, max_value=40),  # points
        st.integers(min_value=0, max_value=3 * DAY),  # time step
    ),
    max_size=60,
)


class _World:
    """Two members, their model points, what left circulation, and every event of each."""

    def __init__(self) -> None:
        self.events: list[list[AccountEvent]] = [[], []]
        self.accounts = [self._opened(0), self._opened(1)]
        self.model: list[list[Point]] = [[], []]
        self.issued = self.redeemed = self.expired = self.fees = self.reversed = 0

    def _opened(self, i: int) -> Account:
        return self._do(i, None, OpenAccount(ACME, f"u{i}", AccountKind.MEMBER, "acme", ""))

    def _do(
        self,
        i: int,
        state: Account | None,
        command: AccountCommand,
        at: int = T0,
        ruled: LimitIndex | None = None,
    ) -> Account:
        """Decide and evolve on account `i`, keeping its events for the replay."""
        for event in decide(state, command, ruled or rules(0), at):
            self.events[i].append(event)
            state = evolve(state, event)
        assert state is not None
        return state

    def issue(self, who: int, amount: int, now: int, *, lapsing: bool) -> None:
        policy = rules(2 * DAY) if lapsing else rules(0)
        account = self.accounts[who]
        credit = CreditPoints(account.account_id, f"i{now}", TransferKind.ISSUE, "m1", amount, "")
        self.accounts[who] = self._do(who, account, credit, now, policy)
        second = now - now % 1000
        point = (second, second + 2 * DAY) if lapsing else FOREVER
        self.model[who] = sorted([*self.model[who], *[point] * amount])
        self.issued += amount

    def move(self, who: int, wanted: int, now: int, how: str) -> None:
        account = self.accounts[who]
        other = 1 - who
        to = "m1" if how in {"redeem", "reverse"} else self.accounts[other].account_id
        kind = {"redeem": TransferKind.REDEEM, "reverse": TransferKind.REVERSE_ISSUE}.get(
            how, TransferKind.TRANSFER
        )
        ruled = FEES if how == "give" else rules(0)
        amount, fee = min(wanted, account.available_points), 0
        while amount and how == "give" and amount + _fee(amount) > account.available_points:
            amount -= 1
        if amount == 0:
            return
        if how == "give":
            fee = _fee(amount)
        command = DebitPoints(ACME, account.account_id, f"t{now}", kind, to, amount, "")
        account = self._do(who, account, command, now, ruled)
        event = self.events[who][-1]
        assert isinstance(event, PointsDebited)
        assert event.fee_points == fee
        moved = _model_take(self.model[who], amount + fee)
        assert event.lots == _model_lots(moved)
        self.accounts[who] = account
        if how in {"redeem", "reverse"}:
            self.redeemed += amount if how == "redeem" else 0
            self.reversed += amount if how == "reverse" else 0
        elif how == "give_back":  # The destination refused: the points come back.
            back = ReturnPoints(account.account_id, event.transfer_id, kind, to, amount, event.lots)
            self.accounts[who] = self._do(who, account, back, now)
            self.model[who] = sorted([*self.model[who], *moved])
        else:  # Given: the points to the other member, the fee (their oldest after) to fees.
            lots_given, _ = lots.split(event.lots, amount + fee, amount)
            credit = CreditPoints(
                to, event.transfer_id, kind, account.account_id, amount, "", NEVER, lots_given
            )
            self.accounts[other] = self._do(other, self.accounts[other], credit, now)
            self.model[other] = sorted([*self.model[other], *moved[:amount]])
            self.fees += fee

    def expire(self, now: int) -> None:
        for i, account in enumerate(self.accounts):
            command = ExpirePoints(account.account_id)
            after = self._do(i, account, command, now, rules(2 * DAY))
            lapsed = [p for p in self.model[i] if p != FOREVER and p[1] <= now]
            self.model[i] = [p for p in self.model[i] if p == FOREVER or p[1] > now]
            assert account.available_points - after.available_points == len(lapsed)
            self.accounts[i] = after
            self.expired += len(lapsed)

    def check(self) -> None:
        for account, points in zip(self.accounts, self.model, strict=True):
            assert account.available_points == len(points)
            assert account.lots == _model_lots(points)

    def replayed(self, i: int) -> Account | None:
        """Return account `i` rebuilt from its events alone, as a restart rebuilds it."""
        state: Account | None = None
        for event in self.events[i]:
            state = evolve(state, event)
        return state


FEES = LimitIndex(Program(1, ProgramRules(transfer_fee=TransferFee(1, 100, "fees"))))


def _fee(amount: int) -> int:
    """The fee FEES charges a transfer of `amount`: 1 point and 10 %, rounded up."""
    return 1 + -(-amount * 100 // 1000)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_lots_follow_the_reference_model_and_points_are_conserved(
    steps: list[tuple[str, int, int, int]],
) -> None:
    """Issues, transfers with fees, returns, redemptions, reversals and expiries at random.

    FIFO as the model says; I1 holds (what was issued is held, redeemed, reversed, paid in
    fees or expired); and replaying each account's events from nothing, under no rules at
    all, gives the same account: a rule change applies from its position on.
    """
    world = _World()
    now = T0
    for name, who, amount, step in steps:
        now += step
        if name in {"issue", "issue_forever"}:
            world.issue(who, amount, now, lapsing=name == "issue")
        elif name == "expire":
            world.expire(now)
        else:
            world.move(who, amount, now, name)
        world.check()
    held = sum(account.available_points for account in world.accounts)
    gone = world.redeemed + world.reversed + world.fees + world.expired
    assert world.issued == held + gone
    for i, account in enumerate(world.accounts):
        assert world.replayed(i) == account


# --- The transfer process and the policy's bounds --------------------------------------------


def test_a_refused_transfer_returns_its_points_and_fee_in_the_lots_they_left() -> None:
    """Compensate gives back every lot; a refused fee goes back in the fee's own lots."""
    older = Lot(Instant(T0), Instant(T0 + DAY), 8)
    newer = Lot(Instant(T0 + 1_000), Instant(T0 + 1_000 + DAY), 5)
    initiated = TransferInitiated(
        "t1", TransferKind.TRANSFER, "u1", "u2", 10, "", "r", 0, NEVER, 3, "fees", (older, newer)
    )
    debited = transfer.Transfer(initiated, transfer.Phase.DEBITED, 1)
    step = transfer.decide(debited, transfer.Resumed())
    assert isinstance(step, transfer.Credit)
    assert step.command.lots == (older, Lot(newer.earned_at, newer.expires_at, 2))
    refused = transfer.decide(debited, transfer.CreditRefused("ACCOUNT_CLOSED"))
    assert isinstance(refused, transfer.Compensate)
    assert refused.command.lots == (older, newer)
    credited = transfer.Transfer(initiated, transfer.Phase.CREDITED, 2)
    fee_back = transfer.decide(credited, transfer.CreditRefused("ACCOUNT_CLOSED"))
    assert isinstance(fee_back, transfer.ReturnFee)
    assert fee_back.command.lots == (Lot(newer.earned_at, newer.expires_at, 3),)


@pytest.mark.parametrize(
    ("lifetime_ms", "notice_ms", "field"),
    [
        (500, 0, "rules.expiry.lifetime"),
        (1_500, 0, "rules.expiry"),
        (DAY, DAY, "rules.expiry.notice"),
        (0, 1_000, "rules.expiry.notice"),
        ((limits.expiry_lifetime_days_max + 1) * DAY, 0, "rules.expiry.lifetime"),
    ],
)
def test_an_expiry_policy_out_of_its_bounds_is_refused_naming_the_field(
    lifetime_ms: int, notice_ms: int, field: str
) -> None:
    """Whole seconds, up to the longest lifetime, a notice shorter than the lifetime."""
    policy = ExpiryPolicy(Span(lifetime_ms), Span(notice_ms))
    with pytest.raises(errors.InvalidArgument) as refused:
        program.validate(ProgramRules(expiry=policy))
    assert refused.value.metadata["field"] == field


def test_pointex_watch_tells_when_points_lapse() -> None:
    """An expiring-soon notification reads as the points and when their lots lapse."""
    notification = query_service_pb2.Notification(
        kind=query_service_pb2.NOTIFICATION_KIND_POINTS_EXPIRING_SOON,
        points_expiring_soon=query_service_pb2.PointsExpiringSoonDetails(
            amount_points=1_500,
            first_expires_at=Timestamp(seconds=T0 // 1000),
            last_expires_at=Timestamp(seconds=T0 // 1000 + 86_400),
        ),
    )
    assert watch._details(notification) == (
        "1,500 points lapse from 2026-01-01 00:00:00Z to 2026-01-02 00:00:00Z"
    )
