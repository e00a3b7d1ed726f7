"""The program's actor: the one writer of the rules' stream, and the limits every account sees.

A change of the rules is decided and committed like any stream's command; once its commit
is done (whether or not its caller still waits) it becomes the limits in force that account
actors check (`limits`). Until then no account sees it, so it applies to commands decided
after its commit, never to earlier ones. Loading reads the whole stream: one event per
change, few in a program's life.
"""

from __future__ import annotations

from typing import Any

from pointex.server.actors.stream_actor import Inspect, StreamActor, load_stream
from pointex.server.domain import program, streams
from pointex.server.domain.program import NO_LIMITS, NO_PROGRAM, LimitIndex, Program
from pointex.server.eventstore import codec
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore, RecordedEvent, Snapshot


class _ProgramAggregate:
    """The program's rules as an actor's aggregate; short-lived enough to need no snapshot."""

    in_place = False

    def empty(self) -> Program:
        return NO_PROGRAM

    def decide(self, state: Program, command: Any) -> list[Any]:
        return list(program.decide(state, command))

    def evolve(self, state: Program, event: Any) -> Program:
        return program.evolve(state, event)

    def to_snapshot(
        self, _stream_id: str, _state: Program, _version: int, _position: int
    ) -> Snapshot | None:
        return None

    def from_snapshot(self, _snapshot: Snapshot) -> tuple[Program, int, int] | None:
        return None


class ProgramActor(StreamActor[Program]):
    """The only writer of the program's stream in this process."""

    def __init__(self, store: EventStore, committer: GroupCommitter) -> None:
        """Create the actor; `load` reads the rules in force before commands are taken."""
        super().__init__(streams.program(), _ProgramAggregate(), store, committer)
        self._in_force = NO_LIMITS

    def limits(self) -> LimitIndex:
        """Return the limits in force: those of the latest committed change."""
        return self._in_force

    async def load(self) -> Program:
        """Read the rules from the store and put them in force; return them."""
        current: Inspect[Program, Program] = Inspect(lambda state: state)
        loaded = await self.tell(current)
        self.publish(loaded)
        return loaded

    async def follow(self) -> None:
        """Put in force the rules another server committed since (the ranges are split).

        Read from the store; rules this server committed itself are in force already.
        """
        committed, _, _ = await load_stream(self._store, self.stream_id, self._aggregate)
        self.publish(committed)

    def publish(self, committed: Program) -> None:
        """Put committed rules in force, unless later ones already are."""
        if committed.version > self._in_force.version:
            self._in_force = LimitIndex(committed)

    def _took_effect(self, recorded: list[RecordedEvent]) -> None:
        for event in recorded:
            if event.stream_id == self.stream_id:
                # Changes take effect in commit order, each after the one before it.
                after = program.evolve(self._in_force.program, codec.decode(event))
                assert after.version == event.stream_version, (after, event)
                self.publish(after)
