"""The Python SDK against real server processes: both clients, retries, iterators, bulk."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pointex.client import builders
from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.client.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    Refused,
    Unauthenticated,
    Unavailable,
)
from pointex.client.retry import RetryPolicy
from pointex.client.sync import PointexClient
from pointex.server.grpc_edge.status import to_status
from pointex.server.overload import Overloaded as ServerOverloaded
from pointex.v1 import command_service_pb2
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    ServerProcess,
    Stack,
    StartCommandServer,
    StartQueryServer,
)

FAST_RETRY = RetryPolicy(attempts_max=40, backoff_ms_min=50, backoff_ms_max=500)


def _ids(*names: str) -> list[str]:
    suffix = uuid.uuid4().hex[:8]
    return [f"acme:{name}-{suffix}" for name in names]


async def _funded(operator: AsyncPointexClient, points: int) -> tuple[str, str, str]:
    """Open acme's merchant funded with `points` and two acme members; return their ids."""
    merchant, alice, bob = _ids("shop", "alice", "bob")
    await operator.open_account(merchant, "merchant", owner_partner_id="acme")
    await operator.open_account(alice, "member", owner_partner_id="acme")
    await operator.open_account(bob, "member", owner_partner_id="acme")
    await operator.mint(merchant, points)
    return merchant, alice, bob


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[tuple[AsyncPointexClient, AsyncPointexClient]]:
    """An operator's and acme's asyncio clients on the whole stack."""
    targets = Targets(stack.command.target, stack.query.target)
    async with (
        AsyncPointexClient(targets, OPERATOR_TOKEN) as operator,
        AsyncPointexClient(targets, ACME_TOKEN) as acme,
    ):
        yield operator, acme


async def test_async_client_moves_points_and_reads_its_own_writes(
    clients: tuple[AsyncPointexClient, AsyncPointexClient],
) -> None:
    """Issue and transfer with plain arguments; consistent reads see them at once."""
    operator, acme = clients
    merchant, alice, bob = await _funded(operator, 1_000)
    issued = await acme.issue(merchant, alice, 300, "welcome")
    assert issued.merchant_available_points == 700
    moved = await acme.transfer(alice, bob, 120, "gift")
    assert acme.last_position == moved.position
    alice_now = await acme.get_account(alice, consistent=True)
    bob_now = await acme.get_account(bob, consistent=True)
    assert (alice_now.available_points, bob_now.available_points) == (180, 120)


async def test_a_retry_with_the_same_request_id_applies_once(
    clients: tuple[AsyncPointexClient, AsyncPointexClient],
) -> None:
    """The same request id twice returns the original reply; the second changes nothing."""
    operator, acme = clients
    merchant, alice, _ = await _funded(operator, 1_000)
    first = await acme.issue(merchant, alice, 10, request_id="issue-once")
    again = await acme.issue(merchant, alice, 10, request_id="issue-once")
    assert again.position == first.position
    assert (await acme.get_account(alice, consistent=True)).available_points == 10


async def test_typed_exceptions_for_each_family_of_refusal(
    stack: Stack, clients: tuple[AsyncPointexClient, AsyncPointexClient]
) -> None:
    """Each refusal becomes its family's exception with the reason and the request id."""
    operator, acme = clients
    merchant, alice, bob = await _funded(operator, 100)
    with pytest.raises(Refused) as refused:
        await acme.transfer(alice, bob, 5, request_id="too-much")
    assert refused.value.reason == "INSUFFICIENT_POINTS"
    assert refused.value.request_id == "too-much"
    assert refused.value.described is not None
    with pytest.raises(NotFound) as missing:
        await acme.get_account("acme:nobody-" + uuid.uuid4().hex)
    assert missing.value.reason == "ACCOUNT_NOT_FOUND"
    with pytest.raises(PermissionDenied) as forbidden:
        await acme.mint(merchant, 5)
    assert forbidden.value.reason == "ROLE_FORBIDDEN"
    with pytest.raises(InvalidRequest) as invalid:
        await acme.issue(merchant, alice, -1)
    assert invalid.value.reason == "AMOUNT_NOT_POSITIVE"
    with pytest.raises(Conflict) as taken:
        await operator.open_account(alice, "member", owner_partner_id="acme")
    assert taken.value.reason == "ACCOUNT_ALREADY_EXISTS"
    targets = Targets(stack.command.target, stack.query.target)
    async with AsyncPointexClient(targets, "not-a-token") as stranger:
        with pytest.raises(Unauthenticated) as unknown:
            await stranger.get_account(alice)
    assert unknown.value.reason == "TOKEN_INVALID"


async def test_an_unreachable_server_is_unavailable_after_bounded_retries() -> None:
    """Nothing listens: the client retries within its policy, then raises Unavailable."""
    policy = RetryPolicy(attempts_max=3, backoff_ms_min=10, backoff_ms_max=20)
    async with AsyncPointexClient(Targets("127.0.0.1:1"), "t", retry=policy) as client:
        with pytest.raises(Unavailable) as caught:
            await client.mint("acme:shop", 1, request_id="unreachable")
    assert caught.value.unreachable
    assert caught.value.outcome_unknown


class _SheddingService:
    """Refuses the first calls as overloaded (with the server's own status), then answers."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.request_ids: list[str] = []

    async def mint(
        self,
        request: command_service_pb2.MintPointsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> command_service_pb2.MintPointsResponse:
        self.request_ids.append(request.request_id)
        if len(self.request_ids) <= self.refusals:
            status = to_status(ServerOverloaded("MAILBOX_FULL", "busy", retry_after_ms=20))
            details = (("grpc-status-details-bin", status.SerializeToString()),)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, status.message, trailing_metadata=details
            )
        return command_service_pb2.MintPointsResponse(available_points=7)

    def handler(self) -> grpc.GenericRpcHandler[object, object]:
        """Serve MintPoints only, as CommandService does."""
        mint = grpc.unary_unary_rpc_method_handler(
            self.mint,
            request_deserializer=command_service_pb2.MintPointsRequest.FromString,
            response_serializer=command_service_pb2.MintPointsResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "pointex.v1.CommandService", {"MintPoints": mint}
        )


async def test_overloaded_is_retried_after_the_servers_delay_with_the_same_request_id() -> None:
    """RESOURCE_EXHAUSTED with RetryInfo is retried under the same id until it succeeds."""
    service = _SheddingService(refusals=2)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncPointexClient(Targets(f"127.0.0.1:{port}"), "t") as client:
            reply = await client.mint("acme:shop", 1)
        assert reply.available_points == 7
        assert len(set(service.request_ids)) == 1
        assert len(service.request_ids) == 3
        service.refusals = 10
        policy = RetryPolicy(attempts_max=2, backoff_ms_min=10, backoff_ms_max=20)
        async with AsyncPointexClient(Targets(f"127.0.0.1:{port}"), "t", retry=policy) as client:
            with pytest.raises(Overloaded) as caught:
                await client.mint("acme:shop", 1)
        assert caught.value.reason == "MAILBOX_FULL"
        assert caught.value.retry_delay_ms == 20
    finally:
        await server.stop(None)


def test_sync_client_pages_lazily_and_refuses_typed(stack: Stack) -> None:
    """The blocking client runs the same calls; listings fetch one page at a time."""
    targets = Targets(stack.command.target, stack.query.target)
    with PointexClient(targets, OPERATOR_TOKEN) as operator:
        merchant, *members = _ids("shop", "m1", "m2", "m3", "m4", "m5")
        operator.open_account(merchant, "merchant", owner_partner_id="acme")
        for member in members:
            operator.open_account(member, "member", owner_partner_id="acme")
        operator.mint(merchant, 50)
        for member in members:
            operator.issue(merchant, member, 10)
        listed = operator.list_accounts(owner_partner_id="acme", page_size=2, consistent=True)
        ids = [account.account_id for account in listed]
        assert set(members) | {merchant} <= set(ids)
        assert len(ids) == len(set(ids))
        history = list(operator.account_history(merchant, page_size=2, consistent=True))
        assert len(history) == 1 + len(members)
        with pytest.raises(Refused) as refused:
            operator.burn(merchant, 1)
        assert refused.value.reason == "INSUFFICIENT_POINTS"


async def _restart_command(
    old: ServerProcess, tmp_path: Path, start_command_server: StartCommandServer
) -> ServerProcess:
    """SIGKILL the command server and start it again on its port and its store."""
    old.process.kill()
    await old.process.wait()
    return await start_command_server(
        f"sqlite:///{tmp_path / 'events.db'}",
        extra_env={"POINTEX_LISTEN": old.target},
    )


async def test_a_command_retried_across_a_command_server_restart_applies_once(
    tmp_path: Path, stack: Stack, start_command_server: StartCommandServer
) -> None:
    """A command sent while the server is down succeeds once it is back, under one id."""
    targets = Targets(stack.command.target, stack.query.target)
    async with AsyncPointexClient(targets, OPERATOR_TOKEN, retry=FAST_RETRY) as operator:
        merchant, alice, _ = await _funded(operator, 1_000)
        applied = await operator.issue(merchant, alice, 25, request_id="across-restart")
        stack.command.process.kill()
        await stack.command.process.wait()
        retried = asyncio.create_task(operator.issue(merchant, alice, 25, request_id="again"))
        await asyncio.sleep(0.3)
        assert not retried.done()
        restarted = await start_command_server(
            f"sqlite:///{tmp_path / 'events.db'}",
            extra_env={"POINTEX_LISTEN": stack.command.target},
        )
        assert restarted.target == stack.command.target
        await retried
        repeated = await operator.issue(merchant, alice, 25, request_id="across-restart")
        assert repeated.position == applied.position
        alice_now = await operator.get_account(alice, consistent=True)
    assert alice_now.available_points == 50


async def test_notifications_resume_across_a_query_server_restart(
    tmp_path: Path, stack: Stack, start_query_server: StartQueryServer
) -> None:
    """A watcher across a query-server restart gets every notification once, in order."""
    targets = Targets(stack.command.target, stack.query.target)
    async with AsyncPointexClient(targets, OPERATOR_TOKEN, retry=FAST_RETRY) as operator:
        merchant, alice, _ = await _funded(operator, 1_000)
        seen: list[bytes] = []
        amounts: list[int] = []
        first_five = asyncio.Event()

        async def watch(count: int) -> None:
            async for note in operator.notifications(account_ids=[alice], from_beginning=True):
                seen.append(note.cursor)
                amounts.append(note.points_moved.amount_points)
                if len(seen) == 5:
                    first_five.set()
                if len(seen) == count:
                    return

        watcher = asyncio.create_task(watch(10))
        for amount in range(1, 6):
            await operator.issue(merchant, alice, amount)
        await asyncio.wait_for(first_five.wait(), 20)
        await stack.query.terminate()
        for amount in range(6, 11):
            await operator.issue(merchant, alice, amount)
        await start_query_server(
            stack.command.target,
            extra_env={"POINTEX_LISTEN": stack.query.target},
        )
        await asyncio.wait_for(watcher, 30)
    assert amounts == list(range(1, 11))
    assert len(set(seen)) == 10


async def test_bulk_yields_in_order_and_survives_a_broken_stream(
    tmp_path: Path, stack: Stack, start_command_server: StartCommandServer
) -> None:
    """A bulk run killed mid-stream resumes on the restarted server; each award lands once."""
    targets = Targets(stack.command.target, stack.query.target)
    rows = 3_000
    async with AsyncPointexClient(targets, OPERATOR_TOKEN, retry=FAST_RETRY) as operator:
        merchant, alice, _ = await _funded(operator, rows * 2)
        commands = (builders.issue(merchant, alice, 1, request_id=f"bulk-{n}") for n in range(rows))
        indexes: list[int] = []
        restarted = False
        async for outcome in operator.bulk(commands, batch_commands=100, window_batches=3):
            assert outcome.ok, outcome.error
            indexes.append(outcome.index)
            if len(indexes) == 500 and not restarted:
                restarted = True
                stack.command = await _restart_command(
                    stack.command, tmp_path, start_command_server
                )
        assert indexes == list(range(rows))
        again = [
            outcome
            async for outcome in operator.bulk(
                builders.issue(merchant, alice, 1, request_id=f"bulk-{n}") for n in range(rows)
            )
        ]
        assert all(outcome.ok for outcome in again)
        alice_now = await operator.get_account(alice, consistent=True)
    assert alice_now.available_points == rows
