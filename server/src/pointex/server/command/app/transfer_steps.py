"""The start of many transfer processes at once: in one unit, or check, then debit.

A transfer whose two accounts' actors are loaded and have nothing queued is decided at once
on both (the credit on the destination, then the debit on the source, each by the domain's
own decide) and committed as one unit: PointsDebited, PointsCredited, then TransferInitiated
with `completed` set on the process stream, whose version 0 is the idempotency record as in
the step-by-step process: three events, where the steps write four. A refusal raises
before anything is submitted, with the reason the step-by-step process gives; the unit
commits whole or not at all, so it is never open.

Any other transfer takes the steps of handlers.py. A transfer's steps are the same whether
it came alone or in a bulk message; what changes with a batch is only how the steps are
driven. Each step is handed to every actor it concerns before any of its replies is
awaited, and the replies are awaited together (futures, not tasks), so a batch of transfers
costs one record look-up, one wait per step, and the group commits its units share,
instead of a task and several waits per transfer.

Transfers of a batch start in the order sent: every debit of the step-by-step ones is told
after every destination check of the batch has answered, in the order sent, and once a
transfer takes the steps, later transfers of the batch touching either of its accounts take
them too. Transfers from one account are therefore debited in the order sent, whatever
order the destinations answer in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pointex.server.actors.account_actor import Decide, Decided, Inspect, Message
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.stream_actor import Proposal, StreamActor
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.domain import errors, streams
from pointex.server.domain.account import Account, check_credit
from pointex.server.domain.commands import CreditPoints
from pointex.server.domain.events import (
    NEVER,
    AccountEvent,
    TransferInitiated,
)
from pointex.server.domain.processes import transfer as process
from pointex.server.domain.program import FeeQuote
from pointex.server.domain.values import Instant, Principal, TransferKind
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import RecordedEvent, StoreError, StreamAppend
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A validated issue, redeem or transfer."""

    principal: Principal
    request_id: str
    kind: TransferKind
    from_account_id: str
    to_account_id: str
    amount_points: int
    memo: str
    # Appends committed with the transfer's first step (a reversal's mark on its original).
    also: tuple[StreamAppend, ...] = ()
    activates_at: Instant = NEVER  # An issue's points are pending until then.
    reverses: str = ""  # A reversal's original transfer (its pending points go back first).
    fee_quote: FeeQuote | None = None  # A transfer's quoted fee (FEE_SCHEDULE_CHANGED if stale).


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    """A validated ReverseIssue or ReverseRedeem: take back (part of) a completed transfer."""

    principal: Principal
    request_id: str
    kind: TransferKind  # REVERSE_ISSUE or REVERSE_REDEEM
    transfer_id: str  # The original issue or redemption.
    amount_points: int
    memo: str


@dataclass(frozen=True, slots=True)
class TransferDone:
    """A completed transfer: its process record and the position of its last event."""

    initiated: TransferInitiated
    position: int
    fee_refused_reason: str = ""  # Why the fee account refused the fee, which went back.


# What starting one transfer came to: its record and the position of its debit; the whole
# transfer, when it committed in one unit; None when the transfer's record already exists (a
# retry); or the error its check, debit or unit raised.
Started = tuple[TransferInitiated, int] | TransferDone | BaseException | None


def tell(actors: AccountActors, account_id: str, message: Message) -> asyncio.Future[Any]:
    """Deliver `message` to an account's actor; a full mailbox becomes a failed future.

    So does an account another server owns (`Elsewhere`): one transfer of a batch goes there.
    """
    try:
        return actors.actor(account_id).tell(message)
    except (Overloaded, Elsewhere) as error:
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        refused.set_exception(error)
        return refused


async def replies(futures: Sequence[asyncio.Future[Any]]) -> list[Any]:
    """Wait for every future; return each result, or the exception it ended with."""
    if not futures:
        return []
    return await asyncio.gather(*futures, return_exceptions=True)


def _passed() -> asyncio.Future[Any]:
    """Return a check that passed."""
    passed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    passed.set_result(None)
    return passed


def _check_credit(credit: CreditPoints, state: Account | None) -> None:
    check_credit(state, credit)


def _debit(request: TransferRequest, key: str) -> Decide[Account | None, TransferInitiated]:
    def finish(
        _state: Account | None, events: list[AccountEvent]
    ) -> tuple[tuple[StreamAppend, ...], TransferInitiated]:
        initiated = process.initiated_of(request, key, events[0])
        append = StreamAppend(streams.transfer(key), 0, (codec.encode(initiated),))
        return (*request.also, append), initiated

    debit = process.debit_of(request.principal.caller, request, key, request.reverses)
    return Decide(debit, finish)


@dataclass(frozen=True, slots=True)
class Unit:
    """A transfer decided on both accounts and submitted as one unit."""

    initiated: TransferInitiated
    # Resolves with the unit's recorded events once committed; its last is TransferInitiated.
    committed: asyncio.Future[list[RecordedEvent]]

    def done(self, recorded: list[RecordedEvent]) -> TransferDone:
        """Return the completed transfer, given the unit's recorded events."""
        # Its last event is the process record, as a retry reads it.
        return TransferDone(self.initiated, recorded[-1].position)


def in_one_unit(actors: AccountActors, request: TransferRequest, key: str) -> Unit | None:
    """Decide and submit a transfer as one unit; None if it must take the steps instead.

    Raises the DomainError refusing the transfer (nothing submitted), or `Overloaded`.
    """
    if request.from_account_id == request.to_account_id:
        return None  # The debit refuses it, after the destination's check, as it always did.
    destination = actors.ready(request.to_account_id)
    source = actors.ready(request.from_account_id)
    if destination is None or source is None:
        return None
    # The destination first: the steps check it before the debit, so a transfer both
    # accounts refuse fails with the destination's reason on either path.
    credited = destination.propose(process.credit_of(request, key))
    debited = source.propose(
        process.debit_of(request.principal.caller, request, key, request.reverses)
    )
    initiated = process.initiated_of(request, key, debited.events[0], completed=True)
    if initiated.lots:
        # The points keep the lots the debit took from the source (decided second, above).
        credited = destination.propose(process.credit_after(initiated))
    others: list[tuple[StreamActor[Any], Proposal[Any]]] = [(destination, credited)]
    if initiated.fee_points:
        # The fee's credit joins the unit when the fee account can decide it now; a refusal
        # is the process's to handle (the fee goes back), so the transfer takes the steps.
        fee_account = actors.ready(initiated.fee_account_id)
        if fee_account is None:
            return None
        try:
            others.append((fee_account, fee_account.propose(process.fee_credit_of(initiated))))
        except errors.DomainError:
            return None
    # The process record last: the unit's last event is the record, as a retry reads it.
    extra = (*request.also, StreamAppend(streams.transfer(key), 0, (codec.encode(initiated),)))
    return Unit(initiated, source.commit_together(debited, others, extra))


def _start_in_one_unit(
    actors: AccountActors,
    requests: Sequence[TransferRequest],
    keys: Sequence[str],
    fresh: Sequence[int],
    outcomes: list[Started],
) -> tuple[dict[int, Unit], list[int]]:
    """Start each transfer it can in one unit; return those units and the others' indexes."""
    units: dict[int, Unit] = {}
    stepwise: list[int] = []
    stepwise_accounts: set[str] = set()
    for i in fresh:
        request = requests[i]
        accounts = (request.from_account_id, request.to_account_id)
        # After an earlier transfer of the batch on one of its accounts took the steps, this
        # one does too, or it would move points on that account before the earlier one.
        if stepwise_accounts.isdisjoint(accounts):
            try:
                unit = in_one_unit(actors, request, keys[i])
            except (errors.DomainError, Overloaded, StoreError) as error:
                outcomes[i] = error
                continue
            except Exception as error:  # A bug fails its own transfer, not the batch.
                log.exception("transfer %s failed in one unit", keys[i])
                outcomes[i] = error
                continue
            if unit is not None:
                units[i] = unit
                continue
        stepwise.append(i)
        stepwise_accounts.update(accounts)
    return units, stepwise


async def start_transfers(
    actors: AccountActors,
    lookup: RecordLookup,
    requests: Sequence[TransferRequest],
    keys: Sequence[str],
    exists: Sequence[bool] | None = None,
) -> list[Started]:
    """Start each transfer in one unit, or check its destination then debit its source.

    `exists` says which transfers' records exist, when the caller looked them up already.
    Returns one `Started` a request, in the order of `requests`.
    """
    if exists is None:
        exists = await lookup.exists_many([streams.transfer(key) for key in keys])
    outcomes: list[Started] = [None] * len(requests)
    fresh = [i for i, found in enumerate(exists) if not found]
    units, stepwise = _start_in_one_unit(actors, requests, keys, fresh, outcomes)
    # A destination that cannot take the points stops its transfer before anything moves.
    # One that another server owns is not checked: its credit decides (owners.py).
    checks = []
    for i in stepwise:
        destination = requests[i].to_account_id
        if not actors.here(destination):
            checks.append(_passed())
            continue
        credit = process.credit_of(requests[i], keys[i])
        check = Inspect(functools.partial(_check_credit, credit))
        checks.append(tell(actors, destination, check))
    checked = await replies(checks)
    debits: list[asyncio.Future[Any]] = []
    debited: list[int] = []
    for i, answer in zip(stepwise, checked, strict=True):
        if isinstance(answer, BaseException):
            outcomes[i] = answer
            continue
        debits.append(tell(actors, requests[i].from_account_id, _debit(requests[i], keys[i])))
        debited.append(i)
    for i, decided in zip(debited, await replies(debits), strict=True):
        if isinstance(decided, Decided):
            outcomes[i] = (decided.value, decided.position)
        else:
            outcomes[i] = decided
    committed = await replies([unit.committed for unit in units.values()])
    for (i, unit), ended in zip(units.items(), committed, strict=True):
        outcomes[i] = ended if isinstance(ended, BaseException) else unit.done(ended)
    return outcomes
