"""Lots: a member's points by when they were earned and when they lapse (program expiry).

A member account keeps its expiring points as lots, oldest first (by earned_at, then
expires_at). The points an account has beyond its lots never lapse: they were earned while
the program had no expiry policy, and count as older than every lot. So an account of a
program without expiry keeps no lots at all, and nothing here costs it anything.

Everything here works on `total`, the points a lot may stand for: available and held points
(pending points are not earned yet), never below zero. The functions are pure; the account
aggregate calls them from `decide` and `evolve` (domain/account.py), and the events it
writes state the lots that moved, so the other side of a transfer or a trade gets the same
lots (transferred and sold points keep their expiry).

- Spending takes the oldest points first (FIFO): first the points that never lapse, then
  the lots in order (`take`).
- Arriving points (with the lots they bring) first pay off a debt below zero, oldest first,
  then join the lots (`add`).
- A lot whose `expires_at` has passed lapses with PointsExpired (`due`, `lapse`), as far as
  the account has the points available: held points (escrowed for a SELL order) lapse once
  released, or travel with the sale.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

from pointex.server import limits
from pointex.server.domain.values import Instant, Span

_MS_PER_S: Final = 1000
_NONE: Final = Span(0)


@dataclass(frozen=True, slots=True)
class Lot:
    """Points earned at one moment that lapse at one moment."""

    earned_at: Instant
    expires_at: Instant
    amount_points: int

    @property
    def key(self) -> tuple[int, int]:
        """Return the lot's place in FIFO order: earned first, then lapsing first."""
        return self.earned_at.unix_ms, self.expires_at.unix_ms


NO_LOTS: Final[tuple[Lot, ...]] = ()


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """How long earned points last, and how long before they lapse the member is told.

    A `lifetime` of zero: points never lapse (the default). Applies to points earned (issued,
    reversed-redemption credited, or activated) while it is in force: a change never alters
    the lots already made.
    """

    lifetime: Span = _NONE
    notice: Span = _NONE  # No "expiring soon" notice.

    @property
    def on(self) -> bool:
        """Tell whether points earned now get a lot that lapses."""
        return self.lifetime.ms > 0


NO_EXPIRY: Final = ExpiryPolicy()


def earned(policy: ExpiryPolicy, at: Instant, amount_points: int) -> tuple[Lot, ...]:
    """Return the lot of `amount_points` earned at `at` under `policy` (none if they never lapse).

    The moment is taken to the second, so that an account earning many times a second keeps
    one lot for them.
    """
    if not policy.on or amount_points <= 0:
        return NO_LOTS
    second = at.unix_ms - at.unix_ms % _MS_PER_S
    return (Lot(Instant(second), Instant(second + policy.lifetime.ms), amount_points),)


def points(lots: tuple[Lot, ...]) -> int:
    """Return the points the lots hold."""
    return sum(lot.amount_points for lot in lots)


def take(lots: tuple[Lot, ...], total: int, amount: int) -> tuple[tuple[Lot, ...], tuple[Lot, ...]]:
    """Take `amount` points oldest first from an account with `total`; (taken lots, lots left).

    The points that never lapse go first and are taken without a lot; at most `total` points
    are taken (a reversal may take an account below zero: that part takes no lot).
    """
    if not lots:
        return NO_LOTS, NO_LOTS
    rest = max(0, total) - points(lots)
    assert rest >= 0, (lots, total)
    wanted = min(amount, max(0, total)) - rest
    if wanted <= 0:
        return NO_LOTS, lots
    taken: list[Lot] = []
    for i, lot in enumerate(lots):
        if wanted < lot.amount_points:
            taken.append(Lot(lot.earned_at, lot.expires_at, wanted))
            left = Lot(lot.earned_at, lot.expires_at, lot.amount_points - wanted)
            return tuple(taken), (left, *lots[i + 1 :])
        taken.append(lot)
        wanted -= lot.amount_points
        if wanted == 0:
            return tuple(taken), lots[i + 1 :]
    raise AssertionError((lots, total, amount))


def split(taken: tuple[Lot, ...], amount_taken: int, first: int) -> tuple[tuple[Lot, ...], ...]:
    """Split what `take` took into the lots of its `first` points and the lots of the rest.

    A debit takes a transfer's points and its fee at once: the points go to the destination,
    the fee to the fee account (or back, each with its own lots).
    """
    head, tail = take(taken, amount_taken, first) if taken else (NO_LOTS, NO_LOTS)
    return head, tail


def add(
    lots: tuple[Lot, ...], total: int, incoming: tuple[Lot, ...], amount: int
) -> tuple[Lot, ...]:
    """Return the lots after `amount` points arrive with `incoming` lots at an account with `total`.

    The part of `amount` beyond the incoming lots never lapses. A debt (total below zero) is
    paid off first, with the oldest of the arriving points.
    """
    if not incoming:
        return lots
    if total < 0:
        _, incoming = take(incoming, amount, -total)
    merged = list(lots)
    for lot in incoming:
        i = bisect.bisect_left(merged, lot.key, key=_key)
        if i < len(merged) and merged[i].key == lot.key:
            same = merged[i]
            merged[i] = Lot(same.earned_at, same.expires_at, same.amount_points + lot.amount_points)
        else:
            merged.insert(i, lot)
    if len(merged) > limits.lots_per_account_max:
        # The bound on an account's state: the newest two lots become one that lapses when the
        # later of them does, so no point lapses before it was promised to.
        *older, before, last = merged
        both = before.amount_points + last.amount_points
        merged = [*older, Lot(before.earned_at, last.expires_at, both)]
        merged.sort(key=_key)
    return tuple(merged)


def remove(lots: tuple[Lot, ...], leaving: tuple[Lot, ...]) -> tuple[Lot, ...]:
    """Return the lots after exactly the `leaving` lots left (a refunded purchase's own).

    A leaving lot no longer found whole (the account's bound merged it into another) takes
    what is missing from the newest lots, so the points that leave never stay behind.
    """
    if not leaving:
        return lots
    left = {lot.key: lot for lot in lots}
    missing = 0
    for lot in leaving:
        there = left.get(lot.key)
        gone = min(lot.amount_points, there.amount_points if there is not None else 0)
        missing += lot.amount_points - gone
        if there is not None and gone == there.amount_points:
            del left[lot.key]
        elif there is not None:
            left[lot.key] = Lot(there.earned_at, there.expires_at, there.amount_points - gone)
    kept = sorted(left.values(), key=_key)
    while missing and kept:
        newest = kept.pop()
        gone = min(missing, newest.amount_points)
        missing -= gone
        if gone < newest.amount_points:
            kept.append(Lot(newest.earned_at, newest.expires_at, newest.amount_points - gone))
    return tuple(kept)


def _key(lot: Lot) -> tuple[int, int]:
    return lot.key


def due(lots: tuple[Lot, ...], now_ms: int) -> int:
    """Return the points of the lots whose time passed by `now_ms`."""
    return sum(lot.amount_points for lot in lots if 0 < lot.expires_at.unix_ms <= now_ms)


def lapse(
    lots: tuple[Lot, ...], amount: int, now_ms: int
) -> tuple[tuple[Lot, ...], tuple[Lot, ...]]:
    """Lapse `amount` points of the lots due by `now_ms`, oldest first; (lapsed, lots left)."""
    lapsed: list[Lot] = []
    left: list[Lot] = []
    for lot in lots:
        if amount and 0 < lot.expires_at.unix_ms <= now_ms:
            gone = min(amount, lot.amount_points)
            amount -= gone
            lapsed.append(Lot(lot.earned_at, lot.expires_at, gone))
            if gone < lot.amount_points:
                left.append(Lot(lot.earned_at, lot.expires_at, lot.amount_points - gone))
        else:
            left.append(lot)
    assert amount == 0, (lots, amount)
    return tuple(lapsed), tuple(left)


def next_deadline(lots: tuple[Lot, ...], noticed_through_ms: int, notice: Span) -> int:
    """Return when the account next has something to do: a lot lapses or is to be noticed.

    0 when nothing is ahead. `noticed_through_ms`: lots lapsing up to then were noticed.
    """
    deadline = 0
    for lot in lots:
        at = lot.expires_at.unix_ms
        if notice.ms and at > noticed_through_ms:
            at -= notice.ms
        if deadline == 0 or at < deadline:
            deadline = at
    return deadline


def upcoming(lots: tuple[Lot, ...], after_ms: int, through_ms: int) -> tuple[int, int, int]:
    """Return (points, first expiry, last expiry) of the lots lapsing in (after_ms, through_ms]."""
    amount, first, last = 0, 0, 0
    for lot in lots:
        at = lot.expires_at.unix_ms
        if after_ms < at <= through_ms:
            amount += lot.amount_points
            first = at if first == 0 else min(first, at)
            last = max(last, at)
    return amount, first, last
