"""The edge around a unary call, over real gRPC on loopback, with tokens and metrics.

A server built by `start_server` (as both processes build theirs) hosts TransferPoints with
a behaviour each test chooses. What is proved for a unary call: its answer comes back and is
counted OK; a domain refusal comes back with its code and reason and is counted under that
code; an unexpected exception is INTERNAL, never UNKNOWN; bytes that do not decode are
INVALID_ARGUMENT / MALFORMED_REQUEST; a call without a token never reaches the handler; and
a partner's place is held while its call runs and given back however the call ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.edge import loopback_common, register_transfer_points
from pointex.client.errors import from_rpc_error
from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.grpc_edge.auth import TokenTable, current_principal
from pointex.server.grpc_edge.server import RunningServer, Service, start_server
from pointex.server.observability.metrics import Metrics
from pointex.v1 import command_service_pb2 as pb

SERVICE = "pointex.v1.CommandService"
METHOD = f"/{SERVICE}/TransferPoints"
PARTNER_TOKEN = "partner-token-of-acme"
Behaviour = Callable[[pb.TransferPointsRequest], Awaitable[pb.TransferPointsResponse]]


class Edge:
    """The server, a channel to it as the partner acme, and the behaviour of its handler."""

    def __init__(self, running: RunningServer, metrics: Metrics, channel: grpc.aio.Channel) -> None:
        """Answer every call until a test gives the handler another behaviour."""
        self.running = running
        self.metrics = metrics
        self.channel = channel
        self.calls = 0
        self.behaviour: Behaviour = self._answer
        self.entered = asyncio.Event()  # Set by each call that reaches the handler.

    async def _answer(self, request: pb.TransferPointsRequest) -> pb.TransferPointsResponse:
        assert current_principal().principal_id == "acme"
        return pb.TransferPointsResponse(transfer_id=f"t-{request.request_id}")

    async def handle(self, request: Any, _context: Any) -> pb.TransferPointsResponse:
        """Count the call and run the behaviour."""
        self.calls += 1
        self.entered.set()
        return await self.behaviour(request)

    async def transfer(self, request_id: str, *, token: str = PARTNER_TOKEN) -> Any:
        """Call TransferPoints as acme (with `token`; none when empty); return the reply."""
        call = self.channel.unary_unary(
            METHOD,
            request_serializer=pb.TransferPointsRequest.SerializeToString,
            response_deserializer=pb.TransferPointsResponse.FromString,
        )
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return await call(pb.TransferPointsRequest(request_id=request_id), metadata=metadata)

    def counted(self, code: str) -> float:
        """Return how many calls of the method the metrics counted with `code`."""
        value = self.metrics.registry.get_sample_value(
            "pointex_rpcs_total", {"method": METHOD, "code": code}
        )
        return value or 0.0


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    """A server with tokens and metrics hosting TransferPoints, and a channel to it."""
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"partner acme {PARTNER_TOKEN}\n")
    common = loopback_common(tokens_file)
    metrics = Metrics("command")
    holder: list[Edge] = []

    async def handle(request: Any, context: Any) -> pb.TransferPointsResponse:
        return await holder[0].handle(request, context)

    def register(server: grpc.aio.Server) -> None:
        register_transfer_points(server, handle)

    tokens = TokenTable.from_file(tokens_file)
    running = await start_server(common, [Service(SERVICE, register)], tokens, metrics)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    holder.append(Edge(running, metrics, channel))
    yield holder[0]
    await channel.close(None)
    running.stop_watching()
    await running.server.stop(None)


async def test_an_answer_comes_back_and_is_counted_ok(edge: Edge) -> None:
    """The handler's reply is the call's, as the caller's principal; counted OK."""
    reply = await edge.transfer("r1")
    assert reply.transfer_id == "t-r1"
    assert edge.counted("OK") == 1


async def test_a_refusal_keeps_its_code_and_reason_and_is_counted_under_its_code(
    edge: Edge,
) -> None:
    """A DomainError is the call's status, with its ErrorInfo reason, and counted so."""

    async def refuse(_: pb.TransferPointsRequest) -> pb.TransferPointsResponse:
        raise errors.FailedPrecondition("INSUFFICIENT_POINTS", "not enough points")

    edge.behaviour = refuse
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.transfer("r1")
    refused = from_rpc_error(caught.value)
    assert (caught.value.code(), refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    assert (edge.counted("FAILED_PRECONDITION"), edge.counted("OK")) == (1, 0)


async def test_an_unexpected_exception_is_internal_never_unknown(edge: Edge) -> None:
    """A bug is INTERNAL, with nothing of the bug's text in the status."""

    async def crash(_: pb.TransferPointsRequest) -> pb.TransferPointsResponse:
        raise RuntimeError("a bug")

    edge.behaviour = crash
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.transfer("r1")
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug" not in (caught.value.details() or "")  # No traceback or text of the bug.
    assert edge.counted("INTERNAL") == 1


async def test_bytes_that_do_not_decode_are_refused_before_the_handler(edge: Edge) -> None:
    """Bytes that are no TransferPointsRequest: INVALID_ARGUMENT / MALFORMED_REQUEST."""
    raw = edge.channel.unary_unary(METHOD, None, None)  # Bytes as they are, both ways.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\xff\xff\xff", metadata=(("authorization", f"Bearer {PARTNER_TOKEN}"),))
    refused = from_rpc_error(caught.value)
    assert (caught.value.code(), refused.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
    )
    assert edge.calls == 0


@pytest.mark.parametrize(("token", "reason"), [("", "TOKEN_MISSING"), ("wrong", "TOKEN_INVALID")])
async def test_a_call_without_a_valid_token_never_reaches_the_handler(
    edge: Edge, token: str, reason: str
) -> None:
    """No token, or an unknown one: UNAUTHENTICATED with its reason, counted so."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.transfer("r1", token=token)
    refused = from_rpc_error(caught.value)
    assert (caught.value.code(), refused.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)
    assert edge.calls == 0
    assert edge.counted("UNAUTHENTICATED") == 1


async def test_a_partners_place_is_held_while_its_call_runs_and_given_back_however_it_ends(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one place, a second call waits for none: shed; a refused call gives it back."""
    monkeypatch.setattr(limits, "partner_calls_in_flight_max", 1)
    release = asyncio.Event()

    async def wait(_: pb.TransferPointsRequest) -> pb.TransferPointsResponse:
        await release.wait()
        return pb.TransferPointsResponse(transfer_id="waited")

    edge.behaviour = wait
    first = asyncio.create_task(edge.transfer("r1"))
    await edge.entered.wait()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.transfer("r2")  # acme's one place is taken.
    shed = from_rpc_error(caught.value)
    assert (caught.value.code(), shed.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
    assert edge.calls == 1  # The shed call never reached the handler.
    release.set()
    assert (await first).transfer_id == "waited"

    async def refuse(_: pb.TransferPointsRequest) -> pb.TransferPointsResponse:
        raise errors.FailedPrecondition("INSUFFICIENT_POINTS", "not enough points")

    edge.behaviour = refuse
    with pytest.raises(grpc.aio.AioRpcError):
        await edge.transfer("r3")  # Refused: its place is given back too.
    edge.behaviour = edge._answer
    assert (await edge.transfer("r4")).transfer_id == "t-r4"
