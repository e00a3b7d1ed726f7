"""What command servers ask each other: TakeCredits, over real gRPC on loopback.

A PeerServicer answers with a stand-in for `CommandHandlers.take_credit`; a PeerClient asks
it as the driver of a transfer does. What is proved: the credits asked during one turn of
the event loop go in one call; each credit's outcome comes back as the exception the driver
handles (the refusal with its reason, a step taken by another driver, a busy owner, an
operating failure); an owner that cannot be reached, or none known, is StoreUnavailable; a
server that no longer owns the account sends the driver to the owner the leases name now;
an oversized call is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from pointex.cluster.v1 import peer_pb2, peer_pb2_grpc
from pointex.server import limits
from pointex.server.command.edge.peer_servicer import PeerServicer
from pointex.server.domain import errors
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore.port import StoreUnavailable, WrongExpectedVersion
from pointex.server.grpc_edge.interceptors import EdgeInterceptor
from pointex.server.grpc_edge.peer import PeerClient
from pointex.server.overload import Overloaded


class Owner:
    """The stand-in owner: how each transfer's credit ends, and how many calls it took."""

    def __init__(self) -> None:
        """Answer every credit with position 7 unless told otherwise."""
        self.outcomes: dict[str, BaseException] = {}
        self.asked: list[str] = []
        self.servicer: PeerServicer | None = None  # The servicer answering for it.

    async def take_credit(self, transfer_id: str) -> int:
        """Take (or refuse) one credit."""
        self.asked.append(transfer_id)
        await asyncio.sleep(0)
        if transfer_id in self.outcomes:
            raise self.outcomes[transfer_id]
        return 7


@pytest.fixture
async def owner() -> AsyncIterator[tuple[Owner, str, list[int]]]:
    """A gRPC server on loopback answering TakeCredits; yields it, its address, call sizes."""
    stand_in = Owner()
    servicer = stand_in.servicer = PeerServicer(stand_in.take_credit)
    sizes: list[int] = []

    class Counting(PeerServicer):
        async def TakeCredits(  # noqa: N802 - the gRPC method's name.
            self, request: peer_pb2.TakeCreditsRequest, context: object
        ) -> peer_pb2.TakeCreditsResponse:
            sizes.append(len(request.transfer_ids))
            return await servicer.TakeCredits(request, context)  # type: ignore[arg-type]

    server = grpc.aio.server(interceptors=(EdgeInterceptor(None),))
    peer_pb2_grpc.add_PeerServiceServicer_to_server(Counting(stand_in.take_credit), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield stand_in, f"127.0.0.1:{port}", sizes
    await server.stop(None)


async def test_credits_asked_together_go_in_one_call_and_each_keeps_its_outcome(
    owner: tuple[Owner, str, list[int]],
) -> None:
    """Five credits, one call; positions and errors come back as the driver handles them."""
    stand_in, address, sizes = owner
    stand_in.outcomes = {
        "closed": errors.FailedPrecondition(errors.ACCOUNT_CLOSED, "closed", account_id="b"),
        "taken": WrongExpectedVersion("transfer-taken", 1, 2),
        "busy": Overloaded("MAILBOX_FULL", "the mailbox is full", 50),
        "down": StoreUnavailable("the store is away"),
    }

    async def owner_of(_range: int, _moved_from: str) -> str:
        return address

    client = PeerClient(owner_of)
    try:
        ended = await asyncio.gather(
            *(client.credit("b", t) for t in ("ok", "closed", "taken", "busy", "down")),
            return_exceptions=True,
        )
    finally:
        await client.close()
    assert sizes == [5]
    # What the metrics read: asked of the other server, not taken, taken there.
    assert (client.credits_asked, client.credits_not_taken) == (5, 4)
    assert stand_in.servicer is not None
    assert stand_in.servicer.credits_taken == 1
    position, closed, taken, busy, down = ended
    assert position == 7
    assert isinstance(closed, errors.FailedPrecondition)
    assert (closed.reason, dict(closed.metadata)) == (errors.ACCOUNT_CLOSED, {"account_id": "b"})
    assert isinstance(taken, WrongExpectedVersion)
    assert taken.stream_id == "transfer-taken"
    assert isinstance(busy, Overloaded)
    assert (busy.reason, busy.retry_after_ms) == ("MAILBOX_FULL", 50)
    assert isinstance(down, StoreUnavailable)


async def test_an_owner_unknown_or_unreachable_is_store_unavailable() -> None:
    """No owner known, or one that does not answer: the driver retries later."""

    async def nobody(_range: int, _moved_from: str) -> str:
        return ""

    async def gone(_range: int, _moved_from: str) -> str:
        return "127.0.0.1:1"  # Nothing listens there.

    for owner_of in (nobody, gone):
        client = PeerClient(owner_of)
        try:
            with pytest.raises(StoreUnavailable):
                await client.credit("b", "t1")
        finally:
            await client.close()


async def test_a_credit_asked_of_a_server_it_moved_from_is_asked_of_its_new_owner(
    owner: tuple[Owner, str, list[int]],
) -> None:
    """The first server asked no longer owns the account: the driver asks the one named next."""
    stand_in, address, sizes = owner
    former = Owner()
    former.outcomes = {"moved": Elsewhere("account-b")}
    server = grpc.aio.server(interceptors=(EdgeInterceptor(None),))
    peer_pb2_grpc.add_PeerServiceServicer_to_server(PeerServicer(former.take_credit), server)
    former_address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    looks: list[str] = []

    async def owner_of(_range: int, moved_from: str) -> str:
        looks.append(moved_from)
        return address if moved_from == former_address else former_address

    client = PeerClient(owner_of)
    try:
        assert await client.credit("b", "moved") == 7
    finally:
        await client.close()
        await server.stop(None)
    assert looks == ["", former_address]  # Asked again once it said the account moved.
    assert (former.asked, stand_in.asked, sizes) == (["moved"], ["moved"], [1])


async def test_a_call_with_too_many_credits_is_refused(
    owner: tuple[Owner, str, list[int]],
) -> None:
    """More than bulk_commands_max at once: INVALID_ARGUMENT, nothing taken."""
    stand_in, address, _ = owner
    async with grpc.aio.insecure_channel(address) as channel:
        stub = peer_pb2_grpc.PeerServiceStub(channel)
        ids = [f"t{i}" for i in range(limits.bulk_commands_max + 1)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.TakeCredits(peer_pb2.TakeCreditsRequest(transfer_ids=ids))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stand_in.asked == []
