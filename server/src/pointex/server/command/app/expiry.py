"""Expiry: the timer that lapses members' lots when their time comes, and tells of them before.

A member account's expiring points are lots (domain/lots.py). The timer keeps, per account,
the moment it next has something to do: a lot lapses, or is to be told of (the program's
notice period before). Then it asks the account's actor to decide `ExpirePoints`, which
commits PointsExpired and PointsExpiringSoon, or nothing when nothing is due (the points
were spent meanwhile); the actor answers with the account's next deadline, and the timer
waits for that. Points held for a SELL order lapse once released: the release reports the
account again. A step that fails for an operating reason is retried with the runner's backoff.

The account actors report every account whose lots changed (`watch`). At start, the recovery
scan gives the timer every lot that arrived since the checkpoint (`see`), and the checkpoint
itself keeps, for every account with lots, a moment no later than its next deadline (the
calendar: `restore`, `saved`), so the scan never reads further back than the checkpoint.
Deadlines that passed while the server was down are decided before it takes commands
(`resume`), and their answers are what the next checkpoint keeps.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from typing import Any

from pointex.server.actors.account_actor import Decide
from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.runner import ProcessRunner, retry_until_done, sleep_until_due
from pointex.server.domain import lots
from pointex.server.domain.account import Account
from pointex.server.domain.commands import ExpirePoints
from pointex.server.domain.events import ACCOUNT_EVENT_TYPES, LOTS_ARRIVING
from pointex.server.domain.values import Span
from pointex.server.eventstore.port import StoreError
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)

_MS_PER_S = 1000
# Accounts whose deadline passed while the server was down, decided at once at start.
_RESUME_CONCURRENCY = 64


class LotExpiry:
    """Lapses lots at their time and tells of them before (the scan's `tracker` finds them)."""

    def __init__(
        self,
        actors: AccountActors,
        runner: ProcessRunner,
        clock: Callable[[], int],
        notice: Callable[[], Span],
    ) -> None:
        """Expire through `actors`, in `runner`, at `clock`'s time, telling `notice()` before."""
        self._actors = actors
        self._runner = runner
        self._clock = clock
        self._notice = notice
        # (when, account id), the earliest first; `_at` holds each account's earliest entry.
        self._due: list[tuple[int, str]] = []
        self._at: dict[str, int] = {}
        self._added = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    @property
    def watched(self) -> int:
        """Return the accounts waiting for a deadline (for metrics)."""
        return len(self._at)

    def watch(self, account_id: str, state: Account | None) -> None:
        """Take the account's lots as they are now: wake for its next deadline."""
        if state is None or not state.lots:
            return
        self.wake(account_id, min(lot.expires_at.unix_ms for lot in state.lots))

    def wake(self, account_id: str, expires_ms: int) -> None:
        """Wake for the account before `expires_ms`, by the notice period, unless sooner already."""
        at_ms = expires_ms - self._notice().ms
        known = self._at.get(account_id)
        if known is not None and known <= at_ms:
            return
        self._at[account_id] = at_ms
        heapq.heappush(self._due, (at_ms, account_id))
        self._added.set()
        if self._timer is None:
            self._timer = asyncio.create_task(self._run(), name="lot-expiry")

    async def _run(self) -> None:
        while True:
            now_ms = self._clock()
            while self._due and self._due[0][0] <= now_ms:
                at_ms, account_id = heapq.heappop(self._due)
                if self._at.get(account_id) != at_ms:
                    continue  # Superseded by an earlier wake, already taken.
                del self._at[account_id]
                self._runner.detach(self._expire(account_id))
            # Until the next is due, waking early when an earlier one is added.
            await sleep_until_due(self._added, self._due[0][0] - now_ms if self._due else None)

    async def _expire(self, account_id: str) -> None:
        next_ms = await self.expire_now(account_id)
        if next_ms > self._clock():
            self.wake(account_id, next_ms + self._notice().ms)

    async def expire_now(self, account_id: str) -> int:
        """Decide the account's expiry now; return its next deadline (0: none ahead now).

        A deadline not after now means points that lapsed are held: their release reports
        the account again.
        """
        notice = self._notice()

        def deadline(state: Account | None, _events: list[Any]) -> tuple[tuple[()], int]:
            if state is None:
                return (), 0
            return (), lots.next_deadline(state.lots, state.noticed_through_ms, notice)

        async def step() -> int:
            decided = await self._actors.ask(account_id, Decide(ExpirePoints(account_id), deadline))
            value: int = decided.value
            return value

        next_ms: int = await retry_until_done(
            step,
            retry_on=(StoreError, Overloaded),
            what=f"expiry of lots on {account_id}",
            pause_first=False,
        )
        return next_ms

    def stop(self) -> None:
        """Stop the timer; the next start's calendar and scan find every lot again."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    @property
    def notice_ms(self) -> int:
        """Return how long before a lot lapses it is told of, in milliseconds."""
        return self._notice().ms

    def now_ms(self) -> int:
        """Return the time now, by the timer's clock."""
        return self._clock()

    def tracker(self, among: Callable[[str], bool] | None = None) -> LotCalendar:
        """Return a recovery scan's tracker of the lots on this server's accounts.

        `among`: those of some accounts only (the ranges a balanced server just took).
        """
        return LotCalendar(self, among or self._actors.here)

    def forget(self, among: Callable[[str], bool]) -> None:
        """Stop waking for the accounts `among` (their range's next owner has their lots)."""
        self._due = [due for due in self._due if not among(due[1])]
        heapq.heapify(self._due)
        for account_id in [a for a in self._at if among(a)]:
            del self._at[account_id]


class LotCalendar:
    """The recovery scan's tracker of the lots on some accounts, with the checkpoint's calendar."""

    kind = "expiry"
    # The events that bring lots to an account (a deadline the calendar may not know yet).
    types = frozenset(ACCOUNT_EVENT_TYPES[arriving][0] for arriving in LOTS_ARRIVING)

    def __init__(self, timer: LotExpiry, among: Callable[[str], bool]) -> None:
        """Keep the calendar of the accounts `among`, for `timer` to wake for."""
        self._timer = timer
        self._among = among
        # The calendar: account -> a moment no later than its next lot's expiry.
        self._calendar: dict[str, int] = {}

    def restore(self, saved: object) -> None:
        """Take the calendar a checkpoint kept (of the tracked accounts; several: the earliest)."""
        assert isinstance(saved, list), saved
        for account_id, at_ms in saved:
            if self._among(account_id):
                self._note(str(account_id), int(at_ms))

    def saved(self) -> list[list[Any]]:
        """Return the calendar for the checkpoint: every account with lots, and when."""
        return [[account_id, at_ms] for account_id, at_ms in sorted(self._calendar.items())]

    def saved_by(self, key: Callable[[str], int]) -> dict[int, list[list[Any]]]:
        """Return the calendar split by `key` of each account (a checkpoint per slice range)."""
        split: dict[int, list[list[Any]]] = {}
        for account_id, at_ms in sorted(self._calendar.items()):
            split.setdefault(key(account_id), []).append([account_id, at_ms])
        return split

    def _note(self, account_id: str, at_ms: int) -> None:
        known = self._calendar.get(account_id)
        if known is None or at_ms < known:
            self._calendar[account_id] = at_ms

    def see(self, position: int, event: object) -> None:
        """Note the lots an event brings: the account's deadline is no later than theirs."""
        del position  # Lots are tracked by the calendar, which the checkpoint keeps.
        assert isinstance(event, LOTS_ARRIVING), event
        if not event.lots or not self._among(event.account_id):
            return  # With split slice ranges, another server's accounts are its own to expire.
        self._note(event.account_id, min(lot.expires_at.unix_ms for lot in event.lots))

    def oldest(self) -> None:
        """Hold no position back: the calendar goes with the checkpoint."""

    def open_count(self) -> int:
        """Return how many accounts the calendar holds."""
        return len(self._calendar)

    async def resume(self) -> None:
        """Decide every deadline that passed; wait for the others; keep the answers."""
        now_ms = self._timer.now_ms()
        notice_ms = self._timer.notice_ms  # The calendar keeps expiries; a wake comes before.
        passed = [a for a, at_ms in self._calendar.items() if at_ms - notice_ms <= now_ms]
        gate = asyncio.Semaphore(_RESUME_CONCURRENCY)

        async def decide(account_id: str) -> None:
            async with gate:
                next_ms = await self._timer.expire_now(account_id)
            if next_ms:
                self._calendar[account_id] = next_ms + notice_ms
            else:
                del self._calendar[account_id]

        await asyncio.gather(*(decide(account_id) for account_id in passed))
        for account_id, at_ms in self._calendar.items():
            if at_ms - notice_ms > now_ms:  # Not held lots that lapsed: a release tells.
                self._timer.wake(account_id, at_ms)
