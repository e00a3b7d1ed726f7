"""A client-streaming call refused before its handler runs reaches the client as refused.

grpcio's asyncio client reports INTERNAL ("Internal error from Core") when its first write
loses the race with a status the server sends before reading anything (grpc/grpc#36066).
The server therefore waits, bounded by `refused_stream_settle_ms`, for the first message or
the half-close of a refused stream before answering. Before that wait, about 1 call in 100
of the loop below came back INTERNAL on this machine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator

import grpc

from pointex.server import limits
from pointex.v1 import command_service_pb2 as pb
from tests.e2e.chaos.rpcs import ALL_RPCS, call_raw
from tests.e2e.conftest import QUERY_TOKEN, ServerProcess, bearer

_BULK = next(rpc for rpc in ALL_RPCS if rpc.name == "ExecuteBulk")
_FORBIDDEN = "PERMISSION_DENIED ROLE_FORBIDDEN"


async def test_a_refused_bulk_stream_always_gets_its_status(command_server: ServerProcess) -> None:
    """1,000 bulk streams from a role that may not call it: every one ROLE_FORBIDDEN."""
    request = pb.ExecuteBulkRequest().SerializeToString()
    outcomes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(command_server.target) as channel:
        for _ in range(1000):
            outcome = await call_raw(channel, _BULK, [request], bearer(QUERY_TOKEN))
            outcomes[f"{outcome.code.name} {outcome.reason}".strip()] += 1
    assert outcomes == Counter({_FORBIDDEN: 1000})


async def test_a_refused_stream_that_sends_nothing_is_answered_within_the_bound(
    command_server: ServerProcess,
) -> None:
    """No message and no half-close: the status comes once the settle bound has passed."""
    async with grpc.aio.insecure_channel(command_server.target) as channel:
        bulk = channel.stream_stream(_BULK.path, None, None)
        # No request iterator: nothing is written and the stream is never closed.
        call = bulk(None, metadata=bearer(QUERY_TOKEN), timeout=10)
        started = time.perf_counter()
        code = await call.code()
        waited_s = time.perf_counter() - started
        details = await call.details()
    assert code is grpc.StatusCode.PERMISSION_DENIED, details
    # It waited for the bound, and not for the call's deadline.
    assert limits.refused_stream_settle_ms / 1000 * 0.9 <= waited_s < 5, waited_s


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an (empty) async generator.


async def test_a_refused_stream_that_half_closes_at_once_is_answered_at_once(
    command_server: ServerProcess,
) -> None:
    """An empty request stream: refused without waiting for the settle bound."""
    async with grpc.aio.insecure_channel(command_server.target) as channel:
        bulk = channel.stream_stream(_BULK.path, None, None)
        started = time.perf_counter()
        call = bulk(_nothing(), metadata=bearer(QUERY_TOKEN), timeout=10)
        code = await call.code()
        waited_s = time.perf_counter() - started
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert waited_s < limits.refused_stream_settle_ms / 1000, waited_s
