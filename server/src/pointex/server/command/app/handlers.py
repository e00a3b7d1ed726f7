"""The command service layer: idempotent single-account commands and transfer processes.

Servicers convert a request and call one of these; here a command becomes actor
messages and appends, and a retry becomes a replay of the recorded outcome.

A transfer (issue, redeem, transfer) is a process whose every step is an event:
(1) the destination is checked (nothing is written if it cannot take the points);
(2) the source decides PointsDebited, committed with TransferInitiated on the process
stream; (3) the destination decides PointsCredited, committed with TransferCompleted, or
if it now refuses, the source gets PointsReturned with TransferCompensated. Which step is
due is decided by the pure state machine of domain/processes/transfer.py. After a crash
between (2) and (3), the recovery scan finds the transfer open and finishes it. When both
accounts' actors are loaded, the transfer commits as one unit instead (transfer_steps.py):
never open, so a single such transfer needs no process task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pointex.server.actors.account_actor import Decide, Decided
from pointex.server.actors.program_actor import ProgramActor
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.stream_actor import appending
from pointex.server.command.app.idempotency import (
    Replies,
    Request,
    key_reused,
    recorded_reply,
    replay_record,
    request_key,
)
from pointex.server.command.app.owners import ALL_HERE, Owners
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.record_reads import RecordReads
from pointex.server.command.app.runner import ProcessRunner, retry_until_done
from pointex.server.command.app.transfer_steps import (
    ReversalRequest,
    TransferDone,
    TransferRequest,
    in_one_unit,
    replies,
    start_transfers,
    tell,
)
from pointex.server.domain import errors, streams
from pointex.server.domain.account import Account
from pointex.server.domain.commands import AccountCommand
from pointex.server.domain.events import (
    AccountEvent,
    TransferCompensated,
    TransferCompleted,
    TransferCredited,
    TransferInitiated,
)
from pointex.server.domain.processes import transfer as process
from pointex.server.domain.program import Program, SetProgramRules
from pointex.server.domain.values import Principal, TransferKind
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import (
    EventStore,
    StoreError,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
)
from pointex.server.overload import Overloaded

__all__ = ["CommandHandlers", "ReversalRequest", "TransferDone", "TransferRequest"]

log = logging.getLogger(__name__)

R = TypeVar("R")
S = TypeVar("S")


class CommandHandlers:
    """Run commands against the actors of one command server."""

    def __init__(
        self,
        store: EventStore,
        actors: AccountActors,
        lookup: RecordLookup,
        runner: ProcessRunner,
        program: ProgramActor,
        *,
        owners: Owners = ALL_HERE,
    ) -> None:
        """Serve commands over `store` through `actors`; `lookup` spots retries.

        Transfer processes run detached from their callers in `runner`; the program's rules
        change through `program`. A step on an account another server owns is asked of it
        through `owners` (owners.py).
        """
        self._store = store
        self._actors = actors
        self._owners = owners
        self._program = program
        self._lookup = lookup
        self._records = RecordReads(store)
        self._runner = runner
        # Transfers debited and not yet credited or returned: id -> (initiation position, record).
        self._open: dict[str, tuple[int, TransferInitiated]] = {}
        # Originals being reversed now: their reversals take turns.
        self._reversing = KeyedLocks()

    async def single(
        self,
        principal: Principal,
        request: Request,
        *,
        account_id: str,
        command: AccountCommand,
        replies: Replies[R],
        respond: Callable[[Account | None, list[AccountEvent]], R],
    ) -> R:
        """Run a single-account command once per request id; return its reply."""
        return await self.recorded(
            principal,
            request,
            lambda decide: self._actors.ask(account_id, decide),
            replies=replies,
            respond=respond,
            command=command,
        )

    async def recorded(
        self,
        principal: Principal,
        request: Request,
        ask: Callable[[Decide[S, R]], Awaitable[Decided[R]]],
        *,
        command: object,
        replies: Replies[R],
        respond: Callable[[S, list[Any]], R],
    ) -> R:
        """Run a single-stream command once per request id through `ask`; return its reply.

        `ask` delivers the command to its stream's actor; the request's record commits with
        the command's events, in one unit.
        """
        stream = streams.request(request_key(principal, request.request_id))
        if await self._lookup.exists(stream):  # A retry: answer from the record.
            replayed = await replay_record(self._store, stream, request.digest, replies)
            assert replayed is not None, stream
            return replayed

        def finish(state: S, events: list[Any]) -> tuple[Any, R]:
            reply = respond(state, events)
            if not events:
                return (), reply
            record = recorded_reply(stream, principal.principal_id, request, replies.encode(reply))
            return (record,), reply

        try:
            decided = await ask(Decide(command, finish))
        except WrongExpectedVersion as conflict:
            if conflict.stream_id != stream:
                raise
            replayed = await replay_record(self._store, stream, request.digest, replies)
            assert replayed is not None, "a conflict on the record means the record exists"
            return replayed
        except errors.DomainError:
            # The first attempt may have changed the state so that a repeat is refused.
            replayed = await replay_record(self._store, stream, request.digest, replies)
            if replayed is None:
                raise
            return replayed
        return replies.at(decided.value, decided.position)

    async def set_program_rules(
        self,
        principal: Principal,
        request: Request,
        command: SetProgramRules,
        replies: Replies[R],
        respond: Callable[[Program], R],
    ) -> R:
        """Change the program's rules once per request id; return the reply.

        The new limits are in force for every command decided once the change committed.
        """
        if not self._owners.owns(streams.program()):  # Its owner changes the rules.
            raise Elsewhere(streams.program())

        def ask(decide: Decide[Program, R]) -> Awaitable[Decided[R]]:
            return self._program.tell(decide)

        def respond_to(program: Program, _: list[Any]) -> R:
            return respond(program)

        return await self.recorded(
            principal, request, ask, command=command, replies=replies, respond=respond_to
        )

    async def transfer(self, request: TransferRequest) -> TransferDone:
        """Run a transfer process once per request id; return when it completed.

        A transfer that commits in one unit is never open, so it needs no process detached
        from the caller: it runs in the caller's task, with no task or gathering of its own.
        """
        key = request_key(request.principal, request.request_id)
        if await self._lookup.exists(streams.transfer(key)):  # A retry: answer from the record.
            resumed = await self._after_start(request, key, None)
            assert resumed is not None, "a retry of a recorded transfer has its record"
            return resumed
        try:
            unit = in_one_unit(self._actors, request, key)
            if unit is not None:
                # Submitted: a caller that goes away now does not stop the commit.
                return unit.done(await asyncio.shield(unit.committed))
        except (errors.DomainError, Overloaded, StoreError) as error:
            done = await self._after_start(request, key, error)
            assert done is not None, "only a retry has no error to answer"
            return done
        (outcome,) = await self.transfer_many([request], exists=[False])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def transfer_many(
        self, requests: Sequence[TransferRequest], exists: Sequence[bool] | None = None
    ) -> list[TransferDone | BaseException]:
        """Run transfer processes, each as `transfer` runs it; return each one's end or error.

        The processes run in a task of their own, shielded from the caller: a client that
        hangs up or runs out of deadline after the debit must not leave the points in flight.
        `exists` says which transfers' records exist, when the caller looked them up already.
        """
        task = self._runner.spawn(self._transfer_many(requests, exists))
        return await asyncio.shield(task)

    async def _transfer_many(
        self, requests: Sequence[TransferRequest], exists: Sequence[bool] | None
    ) -> list[TransferDone | BaseException]:
        keys = [request_key(request.principal, request.request_id) for request in requests]
        started = await start_transfers(self._actors, self._lookup, requests, keys, exists)
        outcomes: dict[int, TransferDone | BaseException] = {}
        debited: list[tuple[int, TransferInitiated]] = []
        others: dict[int, Awaitable[TransferDone | None]] = {}
        for i, start in enumerate(started):
            if isinstance(start, TransferDone):  # Committed in one unit: nothing is open.
                outcomes[i] = start
            elif start is None or isinstance(start, BaseException):
                others[i] = self._after_start(requests[i], keys[i], start)
            else:
                initiated, position = start
                self._open[keys[i]] = (position, initiated)
                debited.append((i, initiated))
        # Retries and failed starts take their own paths meanwhile (gather starts them now).
        ended = asyncio.gather(*others.values(), return_exceptions=True)
        completed = await self._complete_many([initiated for _, initiated in debited])
        for (i, initiated), outcome in zip(debited, completed, strict=True):
            if isinstance(outcome, StoreError | Overloaded):
                self._finish_later(initiated.transfer_id)
            outcomes[i] = outcome
        for i, ending in zip(others, await ended, strict=True):
            assert ending is not None, "a retry of a recorded transfer has its record"
            outcomes[i] = ending
        return [outcomes[i] for i in range(len(requests))]

    async def _after_start(
        self, request: TransferRequest, key: str, start: BaseException | None
    ) -> TransferDone | None:
        """Answer a transfer that did not start: a retry, a race with a first attempt, an error."""
        if start is None:  # A retry: answer from the record.
            return await self._resume(request, key, required=True)
        if isinstance(start, StoreUnavailable):
            # The debit's commit may have happened (outcome unknown): find out once the store
            # answers, and finish the transfer if it did, whether or not the client retries.
            self._reconcile_later(key)
            raise start
        if isinstance(start, WrongExpectedVersion):
            if start.stream_id != streams.transfer(key):
                raise start
            return await self._resume(request, key, required=True)
        if isinstance(start, errors.DomainError):
            # The first attempt may have changed the state so that a repeat is refused.
            resumed = await self._resume(request, key, required=False)
            if resumed is None:
                raise start
            return resumed
        raise start

    def _finish_later(self, key: str) -> None:
        """Keep retrying an open transfer whose last step failed for an operating reason."""

        async def finish_if_open() -> None:
            if key in self._open:
                loaded = await self._load(key)
                assert loaded is not None, key  # An open transfer has its record.
                await self._advance(loaded[0])

        async def retry() -> None:
            with contextlib.suppress(errors.DomainError):  # Compensated: the process ended.
                await retry_until_done(
                    finish_if_open,
                    retry_on=(StoreError, Overloaded),
                    what=f"transfer {key}",
                )

        self._runner.spawn(retry())

    def _reconcile_later(self, key: str) -> None:
        """Find out once the store answers whether a debit committed; finish it if it did."""

        async def reconcile() -> None:
            loaded = await retry_until_done(
                lambda: self._load(key),
                retry_on=(StoreError,),
                what=f"the outcome of transfer {key}",
            )
            if loaded is None or key in self._open:
                return
            transfer, _, initiated_at = loaded
            if _is_open(transfer):
                self._reopen(initiated_at, transfer.initiated)
                self._finish_later(key)

        self._runner.spawn(reconcile())

    async def _complete_many(
        self, transfers: Sequence[TransferInitiated]
    ) -> list[TransferDone | BaseException]:
        """Credit each debited transfer's destination, all credits told before any is awaited.

        Each then takes the rest of its steps (`_advance`): the fee's, or the compensation.
        """
        asked = []
        debited = [process.evolve(None, initiated) for initiated in transfers]
        recorded: list[process.TransferEvent] = []
        for transfer in debited:
            step = process.decide(transfer, process.Resumed())
            assert isinstance(step, process.Credit), step
            account_id = step.command.account_id
            if self._actors.here(account_id):
                credit = Decide(step.command, appending(_append(transfer, step.recorded)))
                asked.append(tell(self._actors, account_id, credit))
            else:
                asked.append(asyncio.ensure_future(self._credit(transfer, step)))
            recorded.append(step.recorded)
        outcomes: list[TransferDone | BaseException] = []
        others: dict[int, Awaitable[TransferDone]] = {}
        for i, (transfer, decided) in enumerate(zip(debited, await replies(asked), strict=True)):
            outcomes.append(decided)
            if isinstance(decided, Decided):
                after = process.evolve(transfer, recorded[i])
                if after.phase is not process.Phase.COMPLETED:  # The fee's step is due next.
                    others[i] = self._advance(after)
                    continue
                self._settled(transfer.initiated)
                outcomes[i] = TransferDone(transfer.initiated, decided.position)
            elif isinstance(decided, errors.DomainError):
                others[i] = self._refused(transfer, decided)
            elif isinstance(decided, WrongExpectedVersion) and decided.stream_id == _stream(
                transfer
            ):
                others[i] = self._outcome(transfer.initiated)  # Another driver took the step.
        ended = await asyncio.gather(*others.values(), return_exceptions=True)
        for i, outcome in zip(others, ended, strict=True):
            outcomes[i] = outcome
        return outcomes

    async def _advance(self, transfer: process.Transfer) -> TransferDone:
        """Take an open transfer's steps until it ends; return its end or raise its refusal."""
        while True:
            step = process.decide(transfer, process.Resumed())
            if isinstance(step, process.Ended):
                return await self._outcome(transfer.initiated)
            assert isinstance(step, process.Credit), step
            try:
                decided = await self._credit(transfer, step)
            except errors.DomainError as refusal:
                return await self._refused(transfer, refusal)
            except WrongExpectedVersion as conflict:
                if conflict.stream_id != _stream(transfer):
                    raise
                return await self._outcome(transfer.initiated)  # Another driver took it.
            transfer = process.evolve(transfer, step.recorded)
            if transfer.phase is process.Phase.COMPLETED:
                self._settled(transfer.initiated)
                return TransferDone(transfer.initiated, decided.position)

    async def _credit(self, transfer: process.Transfer, step: process.Credit) -> Decided[None]:
        """Take a credit step: here, or by the server that owns its account."""
        account_id = step.command.account_id
        if self._actors.here(account_id):
            credit: Decide[Account | None, None]
            credit = Decide(step.command, appending(_append(transfer, step.recorded)))
            return await self._actors.ask(account_id, credit)
        position = await self._owners.credit(account_id, transfer.transfer_id)
        return Decided(None, [], position)

    async def take_credit(self, transfer_id: str) -> int:
        """Take the credit step due on an account of this server, for the transfer's driver.

        Another server drives the transfer (it owns the source); this one owns the account
        the credit is due on. Returns the credit's position. Raises the credit's refusal,
        WrongExpectedVersion on the transfer's stream when no credit is due any more (the
        driver then reads what happened), or StoreUnavailable when the account is no longer
        this server's.
        """
        loaded = await self._load(transfer_id)
        if loaded is None:
            raise errors.NotFound(
                errors.TRANSFER_NOT_FOUND, "no such transfer", transfer_id=transfer_id
            )
        transfer = loaded[0]
        step = process.decide(transfer, process.Resumed())
        if not isinstance(step, process.Credit):
            raise WrongExpectedVersion(_stream(transfer), transfer.version, transfer.version)
        if not self._actors.here(step.command.account_id):
            raise Elsewhere(streams.account(step.command.account_id))  # It moved since.
        decided = await self._credit(transfer, step)
        return decided.position

    async def _refused(
        self, transfer: process.Transfer, refusal: errors.DomainError
    ) -> TransferDone:
        """Return the points (and fee) to the source, or the fee alone, after a refused credit."""
        step = process.decide(transfer, process.CreditRefused(refusal.reason))
        assert isinstance(step, process.Compensate | process.ReturnFee), step
        recorded = step.compensated if isinstance(step, process.Compensate) else step.completed
        append = _append(transfer, recorded)
        initiated = transfer.initiated
        try:
            decided = await self._actors.ask(
                initiated.from_account_id, Decide(step.command, appending(append))
            )
        except WrongExpectedVersion as conflict:
            if conflict.stream_id != _stream(transfer):
                raise
            return await self._outcome(initiated)
        self._settled(initiated)
        if isinstance(step, process.ReturnFee):  # The transfer completed without its fee.
            return TransferDone(initiated, decided.position, refusal.reason)
        raise _compensated_error(refusal.reason, refusal.message, decided.position)

    def _settled(self, initiated: TransferInitiated) -> None:
        """Count an open transfer ended, once, whichever of its drivers ends it."""
        if self._open.pop(initiated.transfer_id, None) is not None:
            self._actors.actor(initiated.from_account_id).transfer_settled()

    async def _outcome(self, initiated: TransferInitiated) -> TransferDone:
        """Return (or raise) the recorded end of a transfer, finishing it if still open.

        Another driver took a step of it (a retry, recovery, reconciliation): it may have
        ended it, or credited the destination of a transfer whose fee is still due.
        """
        loaded = await self._load(initiated.transfer_id)
        assert loaded is not None, initiated
        transfer, position, _ = loaded
        step = process.decide(transfer, process.Resumed())
        if not isinstance(step, process.Ended):
            return await self._advance(transfer)
        if step.phase is process.Phase.COMPENSATED:
            raise _compensated_error(step.reason, "the destination refused", position)
        return TransferDone(initiated, position, step.reason)

    async def reverse(self, request: ReversalRequest) -> TransferDone:
        """Take back a completed issue or redemption as a transfer of its own, at most once.

        The reversal commits a TransferReversed on the original's stream, at the version it
        was read at, with its first step: of two reversals of one original, one commits and
        the other finds it reversed.
        """
        # One reversal of an original at a time in this process: the next one reads the
        # original after the first committed, and is refused by name rather than by a conflict.
        async with self._reversing.held(request.transfer_id):
            return await self._reverse(request)

    async def _reverse(self, request: ReversalRequest) -> TransferDone:
        key = request_key(request.principal, request.request_id)
        loaded = await self._load(request.transfer_id, whole=True)
        if loaded is None:
            raise errors.NotFound(
                errors.TRANSFER_NOT_FOUND, "no such transfer", transfer_id=request.transfer_id
            )
        original = loaded[0]
        initiated = original.initiated
        merchant = (
            initiated.from_account_id
            if initiated.kind is TransferKind.ISSUE
            else initiated.to_account_id
        )
        owner = await self._actors.read(merchant)  # Its partner: on any server.
        assert owner is not None, merchant  # A completed transfer's accounts exist.
        if not request.principal.caller.may_act_for(owner.owner_partner_id):
            raise errors.PermissionDenied(
                errors.NOT_OWNER,
                "the transfer's merchant account belongs to another partner",
                transfer_id=request.transfer_id,
            )
        also: tuple[StreamAppend, ...] = ()
        if original.reversed_by != key:  # Else a retry: the record answers it.
            compensated = bool(original.reversed_by) and await self._compensated(
                original.reversed_by
            )
            reversed_ = process.reversal(
                original,
                request.kind,
                request.amount_points,
                key,
                earlier_reversal_compensated=compensated,
            )
            also = (_append(original, reversed_),)
        movement = TransferRequest(
            request.principal,
            request.request_id,
            request.kind,
            initiated.to_account_id,
            initiated.from_account_id,
            request.amount_points,
            request.memo,
            also,
            reverses=request.transfer_id,
        )
        try:
            return await self.transfer(movement)
        except WrongExpectedVersion as conflict:
            if conflict.stream_id != streams.transfer(request.transfer_id):
                raise
            # Another reversal of the original committed first (from another process): this
            # one is refused with what it now finds, unless it was this request's own.
            return await self._reverse(request)

    async def _compensated(self, key: str) -> bool:
        """Tell whether the transfer `key` ended compensated (it moved nothing)."""
        loaded = await self._load(key)
        return loaded is not None and loaded[0].phase is process.Phase.COMPENSATED

    async def _load(
        self, key: str, *, whole: bool = False
    ) -> tuple[process.Transfer, int, int] | None:
        """Return a transfer rebuilt from its stream, its last position and its first's.

        Its first three events tell its process (TransferCredited comes between for a fee);
        `whole` reads its reversals too.
        """
        if whole:
            recorded = await self._store.read_stream(streams.transfer(key), 1)
        else:  # With the other records asked for now, in one read.
            recorded = await self._records.first_events(streams.transfer(key))
        if not recorded:
            return None
        transfer: process.Transfer | None = None
        for event in recorded:
            transfer = process.evolve(transfer, codec.decode(event))
        assert transfer is not None
        return transfer, recorded[-1].position, recorded[0].position

    async def _resume(
        self, request: TransferRequest, key: str, *, required: bool
    ) -> TransferDone | None:
        """Answer a retry from the transfer's record, finishing it if it is still open."""
        loaded = await self._load(key)
        if loaded is None:
            assert not required, key
            return None
        transfer, _, initiated_at = loaded
        if not process.same_terms(request, transfer.initiated):
            raise key_reused()
        if _is_open(transfer):
            if key not in self._open:
                # Its debit's outcome was unknown, and its reconciliation has not run yet:
                # counted open from here, so its source cannot close before it ends.
                self._reopen(initiated_at, transfer.initiated)
            return await self._advance(transfer)
        return await self._outcome(transfer.initiated)

    @property
    def reversing_count(self) -> int:
        """Return the originals with a reversal under way or waiting (for metrics)."""
        return len(self._reversing)

    @property
    def open_count(self) -> int:
        """Return the transfers debited and not yet credited or returned (for metrics)."""
        return len(self._open)

    def open_steps(self, among: Callable[[str], bool] | None = None) -> OpenTransfers:
        """Return the recovery scan's tracker of the open transfers this server drives.

        `among`: those from some accounts only (the ranges a balanced server just took).
        """
        return OpenTransfers(self, among or self._actors.here)

    def forget(self, among: Callable[[str], bool]) -> int:
        """Stop driving the open transfers from the accounts `among`; return how many.

        Their range's next owner finds them open in the log and finishes them; the steps
        under way here end on their own (a step taken twice is refused by the record's
        version), and their retries stop.
        """
        forgotten = [
            key for key, (_, initiated) in self._open.items() if among(initiated.from_account_id)
        ]
        for key in forgotten:
            del self._open[key]
        return len(forgotten)

    async def resume(self, found: Sequence[tuple[int, process.Transfer]]) -> None:
        """Finish every transfer the recovery scan found open (before commands are taken)."""
        for position, transfer in found:
            self._reopen(position, transfer.initiated)
        for _, transfer in found:
            # A compensation raises its refusal; the points went back to the source.
            with contextlib.suppress(errors.DomainError):
                await self._advance(transfer)

    def _reopen(self, position: int, initiated: TransferInitiated) -> None:
        """Count a transfer found debited in the log as open, here and on its source's actor."""
        self._open[initiated.transfer_id] = (position, initiated)
        self._actors.actor(initiated.from_account_id).transfer_found_open()

    def oldest_open(self) -> int | None:
        """Return the initiation position of the oldest transfer still open, if any."""
        return min((position for position, _ in self._open.values()), default=None)


class KeyedLocks:
    """A lock per key, kept only while some task holds or waits for it."""

    def __init__(self) -> None:
        """Hold no locks."""
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        """Hold `key`'s lock for the block; the entry leaves with its last user."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        """Return how many keys are held or waited for."""
        return len(self._locks)


class OpenTransfers:
    """The transfers the recovery scan finds debited and not yet credited or returned."""

    kind = "transfer"
    types = frozenset(
        {"TransferInitiated", "TransferCredited", "TransferCompleted", "TransferCompensated"}
    )

    def __init__(self, handlers: CommandHandlers, among: Callable[[str], bool]) -> None:
        """Track the open transfers from the accounts `among`, for `handlers` to resume."""
        self._handlers = handlers
        self._among = among
        self._found: dict[str, tuple[int, process.Transfer]] = {}

    def see(self, position: int, event: object) -> None:
        """Open a transfer at its initiation; close it at its completion or compensation.

        Only the transfers this server drives: with split slice ranges, a transfer whose
        source another server owns is that server's to finish (its checkpoint is its own).
        """
        if isinstance(event, TransferInitiated):
            # A completed one committed whole, with its credits.
            if not event.completed and self._among(event.from_account_id):
                self._found[event.transfer_id] = (position, process.evolve(None, event))
        elif isinstance(event, TransferCredited):
            if (found := self._found.get(event.transfer_id)) is not None:
                self._found[event.transfer_id] = (found[0], process.evolve(found[1], event))
        else:
            assert isinstance(event, TransferCompleted | TransferCompensated), event
            self._found.pop(event.transfer_id, None)

    def oldest(self) -> int | None:
        """Return where the oldest transfer still open (after resuming) was initiated."""
        return self._handlers.oldest_open()

    def open_count(self) -> int:
        """Return how many transfers the scan found open."""
        return len(self._found)

    async def resume(self) -> None:
        """Credit or compensate every open transfer."""
        await self._handlers.resume(list(self._found.values()))


def _append(transfer: process.Transfer, event: process.TransferEvent) -> StreamAppend:
    """Return the append of a transfer's next event, at the version its stream has now."""
    return StreamAppend(_stream(transfer), transfer.version, (codec.encode(event),))


def _stream(transfer: process.Transfer) -> str:
    return streams.transfer(transfer.transfer_id)


def _is_open(transfer: process.Transfer) -> bool:
    """Tell whether a transfer still has a step due (its credit, its fee, or a return)."""
    return transfer.phase is process.Phase.DEBITED or transfer.phase is process.Phase.CREDITED


def _compensated_error(reason: str, message: str, position: int) -> errors.DomainError:
    return errors.FailedPrecondition(reason, message, position=str(position))
