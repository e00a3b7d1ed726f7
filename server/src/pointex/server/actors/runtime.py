"""The actor system: finds or activates an account's actor, and caps how many stay resident.

Actors are activated on their first message (state loaded from the store) and kept in
least-recently-used order. Past `actors_resident_max`, the least recently used idle actors
are passivated (dropped; their state is in the store). A busy actor (loading, with queued
messages, units or transfers in flight) is never passivated, so the cap can be exceeded
only by the number of actors busy at once, which the mailbox and commit-queue bounds limit.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from pointex.server import limits
from pointex.server.actors.account_actor import (
    AccountActor,
    Clock,
    Decide,
    Decided,
    Inspect,
    LimitsInForce,
    LotsWatch,
    Message,
    PendingWatch,
    account_aggregate,
    load_account,
)
from pointex.server.domain import streams
from pointex.server.domain.account import Account
from pointex.server.domain.program import NO_LIMITS
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore

_DRAIN_POLL_S = 0.01  # How often a drain looks again at the actors still at work.

R = TypeVar("R")
T = TypeVar("T")


def wall_clock_ms() -> int:
    """Return the time now, in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class AccountActors:
    """All account actors of one command server."""

    def __init__(
        self,
        store: EventStore,
        committer: GroupCommitter,
        *,
        resident_max: int,
        limits_in_force: LimitsInForce | None = None,
        clock: Clock = wall_clock_ms,
        here: Callable[[str], bool] | None = None,
    ) -> None:
        """Host actors over `store`, appending through `committer`, at most `resident_max`.

        Actors decide under `limits_in_force` (the program's limits; None: no limits), at the
        time `clock` says. `here` tells which accounts this server owns (None: every one): an
        account another server owns has no actor here (command/app/owners.py).
        """
        assert resident_max > 0, resident_max
        self._aggregate = account_aggregate(limits_in_force or (lambda: NO_LIMITS), clock)
        self._pending_watch: PendingWatch | None = None
        self._lots_watch: LotsWatch | None = None
        self._store = store
        self._committer = committer
        self._resident_max = resident_max
        self._actors: collections.OrderedDict[str, AccountActor] = collections.OrderedDict()
        self._here = here
        self.activations = 0
        self.passivations = 0

    def watch_pending(self, watch: PendingWatch) -> None:
        """Tell `watch` of every pending issue an account commits from now on."""
        self._pending_watch = watch

    def watch_lots(self, watch: LotsWatch) -> None:
        """Tell `watch` of every account whose lots arrive or whose held points come back."""
        self._lots_watch = watch

    def _lots(self, account_id: str, state: Account | None) -> None:
        if self._lots_watch is not None:
            self._lots_watch(account_id, state)

    def _pending(self, account_id: str, transfer_id: str, activates_at_ms: int) -> None:
        if self._pending_watch is not None:
            self._pending_watch(account_id, transfer_id, activates_at_ms)

    @property
    def resident(self) -> int:
        """Return how many actors are in memory now."""
        return len(self._actors)

    def here(self, account_id: str) -> bool:
        """Tell whether the account's actor may run here: this server owns its range."""
        return self._here is None or self._here(account_id)

    def actor(self, account_id: str) -> AccountActor:
        """Return the account's actor, creating it (inactive) if it is not resident.

        Raises Elsewhere for an account another server owns, resident here or not: a range
        given up keeps no actor taking messages.
        """
        if self._here is not None and not self._here(account_id):
            raise Elsewhere(streams.account(account_id))
        actor = self._actors.get(account_id)
        if actor is None:
            actor = AccountActor(
                account_id,
                self._store,
                self._committer,
                self._aggregate,
                self._pending,
                on_lots=self._lots,
            )
            self._actors[account_id] = actor
            self.activations += 1
            self._passivate_beyond_cap()
        else:
            self._actors.move_to_end(account_id)
        return actor

    def ready(self, account_id: str) -> AccountActor | None:
        """Return the account's actor if it is resident and would decide a message at once.

        Never activates an actor, so it never passivates one either: two actors asked for
        in a row both stay the ones the system holds.
        """
        actor = self._actors.get(account_id)
        if actor is None or not actor.decides_now or not self.here(account_id):
            return None
        self._actors.move_to_end(account_id)
        return actor

    @overload
    async def ask(self, account_id: str, message: Inspect[Account | None, T]) -> T: ...

    @overload
    async def ask(self, account_id: str, message: Decide[Account | None, R]) -> Decided[R]: ...

    async def ask(self, account_id: str, message: Message) -> Any:
        """Deliver `message` to the account's actor and wait for its result."""
        return await self.actor(account_id).tell(message)

    async def peek(self, account_id: str) -> Account | None:
        """Return the account's current state (None if it was never opened)."""
        state: Account | None = await self.ask(account_id, Inspect(lambda state: state))
        return state

    async def read(self, account_id: str) -> Account | None:
        """Return the account's state: its actor's here, else the store's (to read, not decide).

        An account another server owns has no actor here; what the store holds of it is as
        of now, which suffices for what does not change once opened (its owning partner).
        """
        if self.here(account_id):
            return await self.peek(account_id)
        state, _, _ = await load_account(self._store, streams.account(account_id))
        return state

    async def drain(self, among: Callable[[str], bool], within_s: float) -> int:
        """Let the actors of the accounts `among` finish what is under way, then drop them.

        Called once those accounts are no longer here (no new message reaches their actors):
        waits up to `within_s` for what they are loading, deciding or committing, and
        returns how many were still at it then (dropped all the same: their commits end on
        their own, and the range's next owner loads what committed).
        """
        ours = [account_id for account_id in self._actors if among(account_id)]
        deadline = time.monotonic() + within_s
        busy = ours
        while busy and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL_S)
            busy = [a for a in busy if a in self._actors and not self._actors[a].at_rest]
        for account_id in ours:
            self._actors.pop(account_id, None)
        self.passivations += len(ours)
        return len(busy)

    def _passivate_beyond_cap(self) -> None:
        excess = len(self._actors) - self._resident_max
        if excess <= 0:
            return
        # Oldest first; busy actors are skipped and stay until they are idle. Only a few are
        # looked at per activation, so an activation costs O(1) whatever the cap.
        scan = limits.passivation_scan_actors_max
        for account_id in list(itertools.islice(self._actors, excess + scan)):
            if excess <= 0:
                break
            if self._actors[account_id].idle:
                del self._actors[account_id]
                self.passivations += 1
                excess -= 1
