"""One account's actor: a stream actor over the account aggregate.

Beyond the generic actor (actors/stream_actor.py), an account actor counts the transfers
out of it whose credit or return has not committed, so that it neither closes nor is
passivated while points it sent are in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pointex.server.actors import snapshots
from pointex.server.actors.stream_actor import (
    Decide,
    Decided,
    Inspect,
    Message,
    StreamActor,
    load_stream,
)
from pointex.server.domain import account, errors, streams
from pointex.server.domain.account import Account
from pointex.server.domain.commands import CloseAccount, DebitPoints
from pointex.server.domain.events import ACCOUNT_EVENT_TYPES, LOTS_ARRIVING
from pointex.server.domain.program import NO_LIMITS, LimitIndex
from pointex.server.eventstore import codec
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore, RecordedEvent, Snapshot

__all__ = [
    "AccountActor",
    "Clock",
    "Decide",
    "Decided",
    "Inspect",
    "LimitsInForce",
    "LotsWatch",
    "Message",
    "PendingWatch",
    "account_aggregate",
    "load_account",
]


# Returns the program's limits in force now (actors/program_actor.py).
LimitsInForce = Callable[[], LimitIndex]


# Returns the time now, in milliseconds since the epoch (debits, sales and purchases record it).
Clock = Callable[[], int]
# Told (account id, issue's transfer id, activation ms) of every PointsPending committed.
PendingWatch = Callable[[str, str, int], None]
# Told (account id, its state) when lots arrived at a member account or held points came back.
LotsWatch = Callable[[str, Account | None], None]
# The events after which an account's lots may be due sooner than the expiry timer knows.
_LOTS_CHANGED = frozenset(
    {*(ACCOUNT_EVENT_TYPES[arriving][0] for arriving in LOTS_ARRIVING), "PointsReleased"}
)


def _no_limits() -> LimitIndex:
    return NO_LIMITS


def _no_clock() -> int:
    return 0


class _AccountAggregate:
    """The account domain as an actor's aggregate, deciding under the limits in force."""

    in_place = False

    def __init__(
        self, limits_in_force: LimitsInForce = _no_limits, clock: Clock = _no_clock
    ) -> None:
        self._limits_in_force = limits_in_force
        self._clock = clock

    def empty(self) -> Account | None:
        return None

    def decide(self, state: Account | None, command: Any) -> list[Any]:
        return account.decide(state, command, self._limits_in_force(), self._clock())

    def evolve(self, state: Account | None, event: Any) -> Account | None:
        return account.evolve(state, event)

    def to_snapshot(
        self, stream_id: str, state: Account | None, version: int, position: int
    ) -> Snapshot | None:
        if state is None:
            return None
        return snapshots.to_snapshot(stream_id, state, version, position)

    def from_snapshot(self, snapshot: Snapshot) -> tuple[Account | None, int, int] | None:
        return snapshots.from_snapshot(snapshot)


ACCOUNTS = _AccountAggregate()  # Loads and snapshots; decides with no limits.


def account_aggregate(limits_in_force: LimitsInForce, clock: Clock) -> _AccountAggregate:
    """Return the account aggregate deciding under `limits_in_force` at `clock`'s time."""
    return _AccountAggregate(limits_in_force, clock)


class AccountActor(StreamActor[Account | None]):
    """The only writer of one account stream in this process."""

    def __init__(
        self,
        account_id: str,
        store: EventStore,
        committer: GroupCommitter,
        aggregate: _AccountAggregate = ACCOUNTS,
        on_pending: PendingWatch | None = None,
        *,
        on_lots: LotsWatch | None = None,
    ) -> None:
        """Create an inactive actor; it loads its state on the first message.

        `on_pending` is told of every pending issue this account commits (pending earn), and
        `on_lots` of the account whenever lots arrive or held points come back (expiry).
        """
        super().__init__(streams.account(account_id), aggregate, store, committer)
        self._on_pending = on_pending
        self._on_lots = on_lots
        self.account_id = account_id
        # Transfers out of this account whose credit or return has not committed yet: it may
        # not close, or leave memory, meanwhile. Kept in memory only (recovery finishes every
        # transfer before the server takes commands); changed only by this actor's methods.
        self.transfers_in_flight = 0

    @property
    def idle(self) -> bool:
        """Tell whether the actor can be passivated without losing anything."""
        return super().idle and self.transfers_in_flight == 0

    def _check(self, command: Any) -> None:
        if isinstance(command, CloseAccount) and self.transfers_in_flight:
            raise errors.FailedPrecondition(
                errors.ACCOUNT_NOT_EMPTY,
                "a transfer from this account is in flight",
                account_id=self.account_id,
            )

    def _submitted(self, command: Any) -> None:
        if isinstance(command, DebitPoints):
            self.transfers_in_flight += 1

    def _failed(self, command: Any) -> None:
        if isinstance(command, DebitPoints):
            self.transfers_in_flight -= 1  # The debit did not commit (or reload will tell).

    def _took_effect(self, recorded: list[RecordedEvent]) -> None:
        state = self.state
        if (
            self._on_lots is not None
            and state is not None
            and state.lots
            and any(e.type in _LOTS_CHANGED and e.stream_id == self.stream_id for e in recorded)
        ):
            self._on_lots(self.account_id, state)
        if self._on_pending is None:
            return
        for event in recorded:
            if event.type == "PointsPending" and event.stream_id == self.stream_id:
                pending = codec.decode(event)
                self._on_pending(self.account_id, pending.transfer_id, pending.activates_at.unix_ms)

    def transfer_found_open(self) -> None:
        """Record a transfer out of this account found debited and not ended (in the log)."""
        self.transfers_in_flight += 1

    def transfer_settled(self) -> None:
        """Record that a transfer out of this account was credited or returned."""
        assert self.transfers_in_flight > 0, self.account_id
        self.transfers_in_flight -= 1


async def load_account(store: EventStore, stream_id: str) -> tuple[Account | None, int, int]:
    """Rebuild an account from its snapshot and the events after it; (state, version, position)."""
    return await load_stream(store, stream_id, ACCOUNTS)
