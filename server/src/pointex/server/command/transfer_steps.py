"""The first two steps of many transfer processes at once: check, then debit.

A transfer's steps are the same whether it came alone or in a bulk message (see
handlers.py for the process); what changes with a batch is only how the steps are driven.
Each step is handed to every actor it concerns before any of its replies is awaited, and
the replies are awaited together (futures, not tasks), so a batch of transfers costs one
record look-up, one wait per step, and the group commits its units share, instead of a
task and several waits per transfer.

Every debit of a batch is told to its actor in the order the transfers were sent, after
every destination check of the batch has answered: transfers from one account are
therefore debited in the order sent, whatever order the destinations answer in.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pointex.server.actors.account_actor import Command, Decided, Inspect, Message
from pointex.server.actors.runtime import ActorSystem
from pointex.server.actors.stream_actor import Finish
from pointex.server.command.idempotency import transfer_stream
from pointex.server.command.record_lookup import RecordLookup
from pointex.server.domain.account import Account, check_credit
from pointex.server.domain.commands import CreditPoints, DebitPoints
from pointex.server.domain.events import AccountEvent, TransferInitiated
from pointex.server.domain.values import TransferKind
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import StreamAppend
from pointex.server.grpc_edge.auth import Principal
from pointex.server.overload import Overloaded


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


@dataclass(frozen=True, slots=True)
class TransferDone:
    """A completed transfer: its process record and the position of its last event."""

    initiated: TransferInitiated
    position: int


# What starting one transfer came to: its record and the position of its debit; None when
# the transfer's record already exists (a retry); or the error its check or debit raised.
Started = tuple[TransferInitiated, int] | BaseException | None


def tell(actors: ActorSystem, account_id: str, message: Message) -> asyncio.Future[Any]:
    """Deliver `message` to an account's actor; a full mailbox becomes a failed future."""
    try:
        return actors.actor(account_id).tell(message)
    except Overloaded as error:
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        refused.set_exception(error)
        return refused


async def replies(futures: Sequence[asyncio.Future[Any]]) -> list[Any]:
    """Wait for every future; return each result, or the exception it ended with."""
    if not futures:
        return []
    return await asyncio.gather(*futures, return_exceptions=True)


def credit_of(transfer: TransferRequest | TransferInitiated, key: str) -> CreditPoints:
    """Return the credit a transfer asks of its destination."""
    return CreditPoints(
        transfer.to_account_id,
        key,
        transfer.kind,
        transfer.from_account_id,
        transfer.amount_points,
        transfer.memo,
    )


def _check_credit(credit: CreditPoints, state: Account | None) -> None:
    check_credit(state, credit)


def appending(*appends: StreamAppend) -> Finish:
    """Return a `finish` that commits `appends` with a command's events and replies None."""

    def finish(_state: object, _events: list[Any]) -> tuple[tuple[StreamAppend, ...], None]:
        return appends, None

    return finish


def _debit(request: TransferRequest, key: str) -> Command:
    debit = DebitPoints(
        request.principal.caller,
        request.from_account_id,
        key,
        request.kind,
        request.to_account_id,
        request.amount_points,
        request.memo,
    )

    def finish(_state: Account | None, events: list[AccountEvent]) -> tuple[Any, Any]:
        initiated = TransferInitiated(
            key,
            request.kind,
            request.from_account_id,
            request.to_account_id,
            request.amount_points,
            request.memo,
            request.request_id,
            events[0].available_points,  # type: ignore[union-attr]
        )
        append = StreamAppend(transfer_stream(key), 0, (codec.encode(initiated),))
        return (append,), initiated

    return Command(debit, finish)


async def start_transfers(
    actors: ActorSystem,
    lookup: RecordLookup,
    requests: Sequence[TransferRequest],
    keys: Sequence[str],
) -> list[Started]:
    """Check each destination, then debit each source with its process record, in order.

    Returns one `Started` a request, in the order of `requests`.
    """
    exists = await lookup.exists_many([transfer_stream(key) for key in keys])
    outcomes: list[Started] = [None] * len(requests)
    fresh = [i for i, found in enumerate(exists) if not found]
    # A destination that cannot take the points stops its transfer before anything moves.
    checks = []
    for i in fresh:
        credit = credit_of(requests[i], keys[i])
        check = Inspect(functools.partial(_check_credit, credit))
        checks.append(tell(actors, requests[i].to_account_id, check))
    checked = await replies(checks)
    debits: list[asyncio.Future[Any]] = []
    debited: list[int] = []
    for i, answer in zip(fresh, checked, strict=True):
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
    return outcomes
