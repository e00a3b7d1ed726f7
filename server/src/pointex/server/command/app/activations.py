"""Pending earn: the timer that makes an issue's pending points available when their time comes.

An issue with a later activation time commits PointsPending on the member's account (the
account actor reports every one, `watch`). The timer keeps a heap of (time, account, issue)
and, when one is due, asks the account's actor to decide `ActivatePoints`, which commits
PointsActivated, or nothing if the points went back meanwhile (a reversal) or were activated
already. A step that fails for an operating reason is retried with the runner's backoff.

At start the recovery scan gives it every issue still pending in the log (`see`), so points
whose time passed while the server was down activate at once; it holds the recovery
checkpoint back to the oldest of them (`oldest`), as an open trade does.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable

from pointex.server.actors.account_actor import Decide
from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.runner import ProcessRunner, retry_until_done, sleep_until_due
from pointex.server.domain.commands import ActivatePoints
from pointex.server.domain.events import PointsActivated, PointsDebited, PointsPending
from pointex.server.eventstore.port import StoreError
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)

_MS_PER_S = 1000


class PendingActivations:
    """Activates pending issues at their time (the recovery scan's `tracker` finds them)."""

    def __init__(
        self, actors: AccountActors, runner: ProcessRunner, clock: Callable[[], int]
    ) -> None:
        """Activate through `actors`' account actors, in `runner`, at `clock`'s time (ms)."""
        self._actors = actors
        self._runner = runner
        self._clock = clock
        # (activation ms, account id, issue's transfer id), the earliest first.
        self._due: list[tuple[int, str, str]] = []
        self._added = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    @property
    def watched(self) -> int:
        """Return the pending issues waiting for their time (for metrics)."""
        return len(self._due)

    def watch(self, account_id: str, transfer_id: str, activates_at_ms: int) -> None:
        """Activate the issue's pending points on `account_id` at `activates_at_ms`."""
        heapq.heappush(self._due, (activates_at_ms, account_id, transfer_id))
        self._added.set()
        if self._timer is None:
            self._timer = asyncio.create_task(self._run(), name="pending-activations")

    async def _run(self) -> None:
        while True:
            now_ms = self._clock()
            while self._due and self._due[0][0] <= now_ms:
                _, account_id, transfer_id = heapq.heappop(self._due)
                self._runner.detach(self._activate(account_id, transfer_id))
            # Until the next is due, waking early when an earlier one is added.
            await sleep_until_due(self._added, self._due[0][0] - now_ms if self._due else None)

    async def _activate(self, account_id: str, transfer_id: str) -> None:
        async def step() -> None:
            await self._actors.ask(account_id, Decide(ActivatePoints(account_id, transfer_id)))

        await retry_until_done(
            step,
            retry_on=(StoreError, Overloaded),
            what=f"activation of issue {transfer_id} on {account_id}",
            pause_first=False,
        )

    def stop(self) -> None:
        """Stop the timer; issues still pending are found again by the next start's scan."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    def tracker(self, among: Callable[[str], bool] | None = None) -> PendingFound:
        """Return a recovery scan's tracker of the issues pending on this server's accounts.

        `among`: those of some accounts only (the ranges a balanced server just took).
        """
        return PendingFound(self.watch, among or self._actors.here)

    def forget(self, among: Callable[[str], bool]) -> None:
        """Drop the issues pending on the accounts `among` (their range's next owner has them)."""
        self._due = [due for due in self._due if not among(due[1])]
        heapq.heapify(self._due)


class PendingFound:
    """The recovery scan's tracker of the issues still pending on some accounts."""

    kind = "activation"
    # A reversal's PointsDebited may take an issue's pending points back, in part or in full.
    types = frozenset({"PointsPending", "PointsActivated", "PointsDebited"})

    def __init__(
        self, watch: Callable[[str, str, int], None], among: Callable[[str], bool]
    ) -> None:
        """Hand the issues found pending on the accounts `among` to `watch` (the timer's)."""
        self._watch = watch
        self._among = among
        # What the scan found still pending: (account, issue) -> [position, ms, points].
        self._found: dict[tuple[str, str], list[int]] = {}

    def see(self, position: int, event: object) -> None:
        """Keep an issue pending from its PointsPending until it activated or went back.

        Only on the tracked accounts (with split slice ranges, the others are their owners').
        """
        assert isinstance(event, PointsPending | PointsActivated | PointsDebited), event
        if not self._among(event.account_id):
            return
        match event:
            case PointsPending():
                key = (event.account_id, event.transfer_id)
                self._found[key] = [position, event.activates_at.unix_ms, event.amount_points]
            case PointsActivated():
                self._found.pop((event.account_id, event.transfer_id), None)
            case PointsDebited(pending_transfer_id=issue) if issue:
                found = self._found.get((event.account_id, issue))
                if found is not None:
                    found[2] -= event.amount_points
                    if found[2] <= 0:  # Reversed in full: nothing will activate.
                        del self._found[(event.account_id, issue)]
            case _:
                pass  # A debit of available points.

    def oldest(self) -> int | None:
        """Return where the oldest issue still pending at start was issued."""
        return min((found[0] for found in self._found.values()), default=None)

    def open_count(self) -> int:
        """Return how many issues the scan found pending."""
        return len(self._found)

    async def resume(self) -> None:
        """Watch every issue found pending; those already due activate at once."""
        for (account_id, transfer_id), (_, at_ms, _) in self._found.items():
            self._watch(account_id, transfer_id, at_ms)
