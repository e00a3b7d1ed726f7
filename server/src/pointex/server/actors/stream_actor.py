"""One stream's actor: decides commands on its state and hands the events to group commit.

An actor handles one message at a time, synchronously (decide, evolve, submit), so no
lock is needed: asyncio runs one piece of code at a time and nothing in a handler awaits.
It does not wait for the commit before the next message (pipelining): a hot stream
decides as fast as the CPU allows while its earlier events are still being committed,
and every unit states the stream version it expects, so a unit decided on events that
did not commit cannot commit either.

When a commit fails, the actor's state may be ahead of the store. It then stops taking
messages, waits until every unit it submitted is resolved, reloads from the store, and
carries on with the messages that queued meanwhile (at most `mailbox_messages_max`).

What the stream is (an account, a market) is an `Aggregate`: its decide/evolve pair and
its snapshot form. Subclasses add the checks only their kind of stream needs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.eventstore import codec
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import (
    EventStore,
    RecordedEvent,
    Snapshot,
    StoreError,
    StoreUnavailable,
    StreamAppend,
)
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R")  # What a Decide's finish replies with.
T = TypeVar("T")  # What an Inspect's read returns.

# Snapshot saves under way, kept referenced until they end (they are fire-and-forget).
_SNAPSHOT_TASKS: set[asyncio.Task[None]] = set()


class Aggregate(Protocol[S]):
    """What an actor needs to know about its kind of stream."""

    # True when `evolve` changes the state in place (a market's book): a unit that cannot be
    # submitted then makes the actor reload instead of keeping the state it had.
    in_place: bool

    def empty(self) -> S:
        """Return the state of a stream with no events."""
        ...

    def decide(self, state: S, command: Any) -> list[Any]:
        """Return the events `command` produces on `state`, or raise a DomainError."""
        ...

    def evolve(self, state: S, event: Any) -> S:
        """Return the state after `event`."""
        ...

    def to_snapshot(self, stream_id: str, state: S, version: int, position: int) -> Snapshot | None:
        """Return a snapshot of `state`, or None if this kind of stream keeps none."""
        ...

    def from_snapshot(self, snapshot: Snapshot) -> tuple[S, int, int] | None:
        """Return (state, version, position) from a snapshot, or None if it is unusable."""
        ...


# Given the state after the command and its events, return the appends to commit in the
# same unit (process and idempotency records) and the value to reply with.
Finish = Callable[[S, list[Any]], tuple[tuple[StreamAppend, ...], R]]


def _no_extra(_state: object, _events: list[Any]) -> tuple[tuple[()], None]:
    return (), None


def appending(*appends: StreamAppend) -> Finish[object, None]:
    """Return a `finish` that commits `appends` with a command's events and replies None."""

    def finish(_state: object, _events: list[Any]) -> tuple[tuple[StreamAppend, ...], None]:
        return appends, None

    return finish


@dataclass(frozen=True, slots=True)
class Decide(Generic[S, R]):
    """Decide `command`; commit its events with what `finish` adds, in one unit.

    The reply is a `Decided`: `finish`'s value and the committed events (none, for a
    command that changed nothing; `position` is then the stream's latest).
    """

    command: Any
    finish: Finish[S, R] = _no_extra  # type: ignore[assignment] # R is None without a finish.
    # Commit `finish`'s appends before the stream's own events, where the process's order
    # says so (a trade's TradeCancelled comes before the quantity's return).
    extra_first: bool = False


@dataclass(frozen=True, slots=True)
class Decided(Generic[R]):
    """What a Decide resolves to once its unit is committed."""

    value: R
    recorded: list[RecordedEvent]
    position: int


@dataclass(frozen=True, slots=True)
class Inspect(Generic[S, T]):
    """Call `read` on the current state (no append), e.g. to pre-check a credit."""

    read: Callable[[S], T]


Message = Decide[Any, Any] | Inspect[Any, Any]


@dataclass(frozen=True, slots=True)
class Proposal(Generic[S]):
    """A command decided on an actor's state but not taken on yet (see `commit_together`)."""

    state: S
    events: list[Any]
    append: StreamAppend


@dataclass(slots=True)
class _Envelope:
    message: Message
    reply: asyncio.Future[Any]


class StreamActor(Generic[S]):
    """The only writer of one stream in this process."""

    def __init__(
        self, stream_id: str, aggregate: Aggregate[S], store: EventStore, committer: GroupCommitter
    ) -> None:
        """Create an inactive actor; it loads its state on the first message."""
        self.stream_id = stream_id
        # Kept rather than looked up per message: on Python 3.11 every look-up of the running
        # loop costs a getpid() system call, once per message on the hot path.
        self._loop = asyncio.get_running_loop()
        self._aggregate = aggregate
        self._store = store
        self._committer = committer
        self.state: S = aggregate.empty()
        self.version = 0  # version of the last event decided (committed or in flight)
        self.last_position = 0  # position of the last committed event of the stream
        self._snapshot_version = 0  # version of the latest snapshot saved or loaded
        self._last_commit: asyncio.Future[list[RecordedEvent]] | None = None
        self._ready = False
        self._loader: asyncio.Task[None] | None = None
        self._backlog: collections.deque[_Envelope] = collections.deque()
        self._units_in_flight = 0
        self._settled = asyncio.Event()
        self._settled.set()

    @property
    def idle(self) -> bool:
        """Tell whether the actor can be passivated without losing anything."""
        return self.at_rest

    @property
    def at_rest(self) -> bool:
        """Tell whether nothing is loading, queued or committing (its stream is as it holds)."""
        # An actor that is not ready holds no state worth keeping (it would reload anyway).
        return self._loader is None and not self._backlog and self._units_in_flight == 0

    @property
    def decides_now(self) -> bool:
        """Tell whether a message told now would be decided at once (loaded, nothing queued)."""
        return self._ready and not self._backlog

    def propose(self, command: Any) -> Proposal[S]:
        """Decide `command` on the current state without taking it on; raise its DomainError.

        The proposal holds only while nothing else is decided: the caller commits it with
        `commit_together` before it next yields to the event loop.
        """
        assert self.decides_now, self.stream_id
        self._check(command)
        aggregate = self._aggregate
        assert not aggregate.in_place, "a proposal must leave the state as it is"
        events = aggregate.decide(self.state, command)
        assert events, "a joint unit holds a change on every stream"
        state = self.state
        for event in events:
            state = aggregate.evolve(state, event)
        append = StreamAppend(self.stream_id, self.version, tuple(codec.encode(e) for e in events))
        return Proposal(state, events, append)

    def commit_together(
        self,
        mine: Proposal[S],
        others: Sequence[tuple[StreamActor[Any], Proposal[Any]]],
        extra: Sequence[StreamAppend],
    ) -> asyncio.Future[list[RecordedEvent]]:
        """Submit this actor's proposal, the other actors' and `extra` as one unit.

        Every actor takes its proposal on at once and counts the unit as in flight, so its
        later units state versions after it, and if it does not commit every actor reloads.
        A full commit queue raises `Overloaded` and changes nothing.
        """
        unit = (mine.append, *(proposal.append for _, proposal in others), *extra)
        commit = self._committer.submit(unit)
        self.take_on(mine, commit)
        for actor, proposal in others:
            actor.take_on(proposal, commit)
        return commit

    def take_on(self, proposal: Proposal[S], commit: asyncio.Future[list[RecordedEvent]]) -> None:
        """Take on a proposal whose unit `commit_together` submitted."""
        # Nothing was decided since the proposal: it is synchronous up to here.
        assert proposal.append.expected_version == self.version, self.stream_id
        self.state = proposal.state
        self.version += len(proposal.events)
        self._track(commit)
        commit.add_done_callback(self._taken_on_resolved)

    def _taken_on_resolved(self, done: asyncio.Future[list[RecordedEvent]]) -> None:
        if self._resolved(done) is None:
            self._took_effect(done.result())

    @overload
    def tell(self, message: Inspect[S, T]) -> asyncio.Future[T]: ...

    @overload
    def tell(self, message: Decide[S, R]) -> asyncio.Future[Decided[R]]: ...

    def tell(self, message: Message) -> asyncio.Future[Any]:
        """Deliver `message`; the future resolves with its result (or its error)."""
        envelope = _Envelope(message, self._loop.create_future())
        if self._ready and not self._backlog:
            self._handle(envelope)
            return envelope.reply
        if len(self._backlog) >= limits.mailbox_messages_max:
            raise Overloaded("MAILBOX_FULL", "the mailbox is full", limits.overload_retry_after_ms)
        self._backlog.append(envelope)
        if self._loader is None:
            self._loader = asyncio.create_task(
                self._load_then_drain(), name=f"load-{self.stream_id}"
            )
        return envelope.reply

    def _handle(self, envelope: _Envelope) -> None:
        try:
            match envelope.message:
                case Inspect(read=read):
                    envelope.reply.set_result(read(self.state))
                case Decide():
                    self._decide(envelope)
        except (errors.DomainError, Overloaded) as error:
            envelope.reply.set_exception(error)
        except Exception as error:  # A bug: this message fails, the actor reloads.
            log.exception("actor %s failed; reloading", self.stream_id)
            envelope.reply.set_exception(error)
            self._ready = False

    def _check(self, command: Any) -> None:
        """Raise a DomainError for a command this actor refuses before deciding it."""

    def _submitted(self, command: Any) -> None:
        """Note that a unit of `command` was handed to group commit."""

    def _failed(self, command: Any) -> None:
        """Note that a unit of `command` did not commit."""

    def _took_effect(self, recorded: list[RecordedEvent]) -> None:
        """Note that a unit of a command committed, as `recorded` (its other streams' too)."""

    def _decide(self, envelope: _Envelope) -> None:
        message = envelope.message
        assert isinstance(message, Decide)
        command = message.command
        self._check(command)
        aggregate = self._aggregate
        events = aggregate.decide(self.state, command)
        if not events:
            _, value = message.finish(self.state, events)
            self._reply_after_latest(envelope, value)
            return
        state = self.state
        for event in events:
            state = aggregate.evolve(state, event)
        extra, value = message.finish(state, events)
        append = StreamAppend(self.stream_id, self.version, tuple(codec.encode(e) for e in events))
        try:
            unit = (*extra, append) if message.extra_first else (append, *extra)
            commit = self._committer.submit(unit)
        except Overloaded:
            if aggregate.in_place:
                self._ready = False  # The state moved on with events that will not commit.
            raise
        self.state = state
        self.version += len(events)
        self._track(commit)
        self._submitted(command)
        commit.add_done_callback(lambda done: self._committed(done, envelope, command, value))

    def _reply_after_latest(self, envelope: _Envelope, value: Any) -> None:
        """Answer a command that changed nothing once what it saw is committed."""
        latest = self._last_commit
        if latest is None or latest.done():
            envelope.reply.set_result(Decided(value, [], self.last_position))
            return

        def answer(done: asyncio.Future[list[RecordedEvent]]) -> None:
            if envelope.reply.done():
                return
            if done.cancelled() or done.exception() is not None:
                # What this command saw did not commit: the caller retries.
                envelope.reply.set_exception(
                    StoreUnavailable("an earlier change to the stream did not commit")
                )
            else:
                envelope.reply.set_result(Decided(value, [], self.last_position))

        latest.add_done_callback(answer)

    async def settled(self) -> None:
        """Wait until every unit this actor submitted has committed or failed.

        After a refusal decided on state whose commit is still in flight, this is when the
        store shows what the actor already saw.
        """
        await self._settled.wait()

    def _track(self, commit: asyncio.Future[list[RecordedEvent]]) -> None:
        """Count a submitted unit as in flight until it is resolved."""
        self._units_in_flight += 1
        self._settled.clear()
        self._last_commit = commit

    def _resolved(self, done: asyncio.Future[list[RecordedEvent]]) -> BaseException | None:
        """Settle a unit in flight; return its error (the actor then reloads), or None."""
        self._units_in_flight -= 1
        if self._units_in_flight == 0:
            self._settled.set()
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is not None:
            # The state may include events that did not commit: reload before the next message.
            self._ready = False
            return error
        self.last_position = max(self.last_position, done.result()[-1].position)
        self._maybe_snapshot()
        return None

    def _committed(
        self,
        done: asyncio.Future[list[RecordedEvent]],
        envelope: _Envelope,
        command: Any,
        value: Any,
    ) -> None:
        error = self._resolved(done)
        if error is None:
            recorded = done.result()
            self._took_effect(recorded)
            if not envelope.reply.done():
                envelope.reply.set_result(Decided(value, recorded, recorded[-1].position))
            return
        self._failed(command)
        if not envelope.reply.done():
            envelope.reply.set_exception(error)

    def _maybe_snapshot(self) -> None:
        """Save a snapshot every `snapshot_interval_events`, when nothing is in flight.

        With nothing in flight, the state holds exactly the committed events up to version.
        """
        if (
            self._units_in_flight
            or self.version - self._snapshot_version < limits.snapshot_interval_events
        ):
            return
        snapshot = self._aggregate.to_snapshot(
            self.stream_id, self.state, self.version, self.last_position
        )
        self._snapshot_version = self.version
        if snapshot is None:
            return

        async def save() -> None:
            try:
                await self._store.save_snapshot(snapshot)
            except StoreError as error:  # Only a cache: the events are still there.
                log.warning("snapshot of %s not saved: %s", self.stream_id, error)

        task = asyncio.create_task(save(), name=f"snapshot-{self.stream_id}")
        _SNAPSHOT_TASKS.add(task)
        task.add_done_callback(_SNAPSHOT_TASKS.discard)

    async def _load_then_drain(self) -> None:
        try:
            await self._settled.wait()
            self.state, self.version, self.last_position = await load_stream(
                self._store, self.stream_id, self._aggregate
            )
            self._snapshot_version = self.version
            self._ready = True
        except Exception as error:  # noqa: BLE001 - store down or a bug: fail what waits; the next message retries.
            log.warning("loading %s failed: %s", self.stream_id, error)
            while self._backlog:
                self._backlog.popleft().reply.set_exception(error)
            return
        finally:
            self._loader = None
        while self._backlog and self._ready:
            self._handle(self._backlog.popleft())
        if self._backlog:  # A handler failed and un-readied the actor: load again.
            self._loader = asyncio.create_task(self._load_then_drain())


async def load_stream(
    store: EventStore, stream_id: str, aggregate: Aggregate[S]
) -> tuple[S, int, int]:
    """Rebuild a stream's state from its snapshot and the events after it.

    Returns (state, version, position).
    """
    state = aggregate.empty()
    version = 0
    position = 0
    snapshot = await store.load_snapshot(stream_id)
    restored = aggregate.from_snapshot(snapshot) if snapshot is not None else None
    if restored is not None:
        state, version, position = restored
    while True:
        page = await store.read_stream(stream_id, version + 1, limits.read_batch_events_max)
        for recorded in page:
            state = aggregate.evolve(state, codec.decode(recorded))
            version = recorded.stream_version
            position = recorded.position
        if len(page) < limits.read_batch_events_max:
            return state, version, position
