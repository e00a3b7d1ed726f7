"""Asking another command server of the cluster to take a step on its account.

With the slice ranges split across command servers (docs/scale-out.md), a transfer is driven
by the owner of its source, and its credit is taken by the owner of the destination
(command/app/owners.py). The driver asks it with `pointex.cluster.v1.PeerService/TakeCredits`
(protos/pointex/cluster/v1/peer.proto; command/edge/peer_servicer.py answers it). The credits
asked of one server during one turn of the event loop go in one call, as the steps of a
batch of transfers are asked together; each comes back as the credit's position or as the
status it ended with, which `PeerClient` turns back into the exception the driver handles.

The other steps (a trade's, an order's placement, a release: command/edge/market_peers.py)
go one call each (`PeerClient.call`), to the owner of the stream they write; a failed call
comes back as the exception the step would have raised here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import grpc

from pointex.cluster.v1 import peer_pb2, peer_pb2_grpc
from pointex.server import limits
from pointex.server.domain import errors, streams
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    StoreUnavailable,
    WrongExpectedVersion,
)
from pointex.server.grpc_edge.forwarding import PeerChannels
from pointex.server.grpc_edge.status import DOMAIN_CODES, OWNER_UNAVAILABLE, hop_bulk_error
from pointex.server.overload import Overloaded
from pointex.server.slices import range_of
from pointex.v1 import command_service_pb2 as pb

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pointex.cluster.v1.peer_pb2_grpc import PeerServiceAsyncStub

T = TypeVar("T")
# One call of the peer service, on a stub, with its timeout in seconds.
Invoke = Callable[["PeerServiceAsyncStub", float], Awaitable[T]]

# The DomainError class of each status a refused credit comes back with: the table the edge
# reports refusals by, read backwards. ABORTED is a step another driver took (a version
# conflict), and UNAUTHENTICATED cannot come from a refused credit.
_REFUSALS: Final[dict[grpc.StatusCode, type[errors.DomainError]]] = {
    code: refusal
    for refusal, code in DOMAIN_CODES.items()
    if code not in {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAUTHENTICATED}
}
_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}

# Credits waiting to be asked of one server: (transfer id, the future of its answer).
_Waiting = list[tuple[str, asyncio.Future[int]]]
# Finds a slice range's owner's address; the second argument names an address that said the
# range is not its own ("" when none did). Returns "" when no owner is known.
OwnerOf = Callable[[int, str], Awaitable[str]]


class _Moved(StoreUnavailable):
    """The server asked does not own the account now: its range moved since the last look."""


class PeerClient:
    """Ask the owner of an account to take a step on it, over gRPC."""

    def __init__(self, owner_of: OwnerOf) -> None:
        """Find a slice range's owner's address with `owner_of` ("" when none is known)."""
        self._owner_of = owner_of
        self._channels = PeerChannels()
        self._waiting: dict[str, _Waiting] = {}  # By address, until this turn's call.
        self._calls: set[asyncio.Task[None]] = set()
        # Counts since start, read by the metrics at each scrape.
        self.credits_asked = 0  # Credits asked of other servers.
        self.credits_not_taken = 0  # Of them, those that came back with an error.
        self.steps_asked = 0  # Other steps asked of other servers (`call`).

    async def credit(self, account_id: str, transfer_id: str) -> int:
        """Have the owner of `account_id` take the credit due on it; return its position.

        Raises the credit's refusal (a DomainError), WrongExpectedVersion on the transfer's
        stream when no credit is due any more, Overloaded when the owner is too busy to take
        it now, or StoreUnavailable when no owner answers.
        """
        slice_range = range_of(streams.account(account_id))
        address = await self._owner_of(slice_range, "")
        try:
            return await self._credit_at(address, account_id, transfer_id)
        except _Moved:  # Asked of its last owner: once more, of the owner the leases name now.
            address = await self._owner_of(slice_range, address)
            return await self._credit_at(address, account_id, transfer_id)

    async def _credit_at(self, address: str, account_id: str, transfer_id: str) -> int:
        if not address:
            raise StoreUnavailable(f"no command server owns account {account_id} now")
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(address)
        if waiting is None:
            waiting = self._waiting[address] = []
            asyncio.get_running_loop().call_soon(self._ask, address)
        waiting.append((transfer_id, answer))
        self.credits_asked += 1
        try:
            return await answer
        except Exception:
            self.credits_not_taken += 1
            raise

    async def call(self, stream_id: str, invoke: Invoke[T]) -> T:
        """Make one peer call to the owner of `stream_id`; return its answer.

        Asked of a server that no longer owns the stream, it is asked once more of the owner
        the leases name now. A failed call raises what the step raised there: its refusal (a
        DomainError), WrongExpectedVersion on the stream that changed, Overloaded,
        CommitOutcomeUnknown, or StoreUnavailable when no owner answers.
        """
        self.steps_asked += 1
        slice_range = range_of(stream_id)
        address = await self._owner_of(slice_range, "")
        try:
            return await self._call_at(address, stream_id, invoke)
        except _Moved:
            address = await self._owner_of(slice_range, address)
            return await self._call_at(address, stream_id, invoke)

    async def _call_at(self, address: str, stream_id: str, invoke: Invoke[T]) -> T:
        if not address:
            raise StoreUnavailable(f"no command server owns {stream_id} now")
        stub = peer_pb2_grpc.PeerServiceStub(self._channels.to(address))
        try:
            return await invoke(stub, limits.peer_call_s)
        except grpc.aio.AioRpcError as error:
            raise _unary_refusal(hop_bulk_error(error), stream_id) from error

    async def close(self) -> None:
        """Close the channels to the other servers (the calls under way end with them)."""
        await self._channels.close()

    def _ask(self, address: str) -> None:
        """Send the credits waiting for `address` in calls of at most `bulk_commands_max`."""
        waiting = self._waiting.pop(address)
        for start in range(0, len(waiting), limits.bulk_commands_max):
            call = asyncio.create_task(
                self._take(address, waiting[start : start + limits.bulk_commands_max])
            )
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _take(self, address: str, waiting: _Waiting) -> None:
        stub = peer_pb2_grpc.PeerServiceStub(self._channels.to(address))
        request = peer_pb2.TakeCreditsRequest(transfer_ids=[t for t, _ in waiting])
        try:
            response = await stub.TakeCredits(request, timeout=limits.peer_call_s)
            answered = len(response.credits) == len(waiting)
            for (transfer_id, answer), credit in zip(waiting, response.credits, strict=False):
                if credit.WhichOneof("outcome") == "position":
                    if not answer.done():
                        answer.set_result(credit.position)
                else:
                    _settle(answer, _refusal(credit.error, transfer_id))
            if not answered:
                log.error(
                    "%s answered %d credits of %d", address, len(response.credits), len(waiting)
                )
        except grpc.aio.AioRpcError as error:
            whole = hop_bulk_error(error)
            for transfer_id, answer in waiting:
                _settle(answer, _refusal(whole, transfer_id))
        finally:  # Cancelled, or answered short: nothing waits for ever.
            for transfer_id, answer in waiting:
                _settle(answer, StoreUnavailable(f"the credit of {transfer_id} got no answer"))


def _settle(answer: asyncio.Future[int], error: Exception) -> None:
    if not answer.done():
        answer.set_exception(error)


def _unary_refusal(error: pb.BulkError, stream_id: str) -> Exception:
    """Return the exception a failed peer call stands for, as the step raised it there."""
    code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
    if code == grpc.StatusCode.ABORTED and error.reason:
        changed = error.metadata.get("stream_id")
        if error.reason == errors.CONCURRENT_MODIFICATION and changed:
            return WrongExpectedVersion(changed, -1, -1)
        return errors.Aborted(error.reason, error.message, **dict(error.metadata))
    if code == grpc.StatusCode.ABORTED:
        return StoreUnavailable(f"a step on {stream_id} ended without a status of its own")
    if code == grpc.StatusCode.UNAVAILABLE and error.reason == "COMMIT_OUTCOME_UNKNOWN":
        return CommitOutcomeUnknown(f"the outcome of a step on {stream_id} is unknown")
    return _failure(error, f"a step on {stream_id}")


def _refusal(error: pb.BulkError, transfer_id: str) -> Exception:
    """Return the exception a credit's error stands for, as the driver handles it."""
    if error.code == grpc.StatusCode.ABORTED.value[0]:  # Another driver took the step.
        return WrongExpectedVersion(streams.transfer(transfer_id), -1, -1)
    return _failure(error, f"the credit of {transfer_id}")


def _failure(error: pb.BulkError, what: str) -> Exception:
    """Return the exception a refused or failed step (`what`) stands for, but a conflict."""
    code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
    refusal = _REFUSALS.get(code)
    if refusal is not None and error.reason:
        return refusal(error.reason, error.message, **dict(error.metadata))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason:
        # The owner is busy (its mailbox or commit queue full): retried as a step is.
        return Overloaded(error.reason, error.message, error.retry_delay.ToMilliseconds())
    if code == grpc.StatusCode.UNAVAILABLE and error.reason == OWNER_UNAVAILABLE:
        return _Moved(f"{what} was asked of a server that no longer owns it")
    return StoreUnavailable(f"{what} was not taken: {error.message}")
