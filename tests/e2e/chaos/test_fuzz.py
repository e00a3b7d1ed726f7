"""Fuzzing every RPC of both servers: no UNKNOWN, no INTERNAL, no crash, nothing changed.

The RPCs come from the service descriptors; each gets bytes that do not decode, then
well-formed requests with wild values and raw random bytes (strategies built from its
request descriptor). Calls carry the operator's token, which every RPC admits, so each
request reaches its handler. A call the server refuses must leave the event log as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st

from tests.e2e.chaos.conftest import Report, scale
from tests.e2e.chaos.rpcs import ALL_RPCS, COMMAND_RPCS, Outcome, Rpc, call_raw, logged_events
from tests.e2e.chaos.strategies import malformed, request_bytes
from tests.e2e.conftest import OPERATOR_TOKEN, ServerProcess, bearer

_NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def draw(strategy: st.SearchStrategy[bytes], count: int, seed: int) -> list[bytes]:
    """Return `count` values of `strategy`, the same for the same seed."""
    drawn: list[bytes] = []

    @seeded(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(value: bytes) -> None:
        drawn.append(value)

    collect()
    return drawn


class _Servers:
    def __init__(self, command: ServerProcess, query: ServerProcess, store_file: Path) -> None:
        self.command = grpc.aio.insecure_channel(command.target)
        self.query = grpc.aio.insecure_channel(query.target)
        self.store_file = store_file

    def channel(self, rpc: Rpc) -> grpc.aio.Channel:
        return self.command if rpc in COMMAND_RPCS else self.query

    async def close(self) -> None:
        await self.command.close(grace=None)
        await self.query.close(grace=None)

    async def serving(self) -> bool:
        for channel in (self.command, self.query):
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return False
        return True


async def _send(
    servers: _Servers, rpc: Rpc, payloads: Sequence[bytes], check: Callable[[Outcome], bool]
) -> Counter[str]:
    """Call `rpc` with each payload; a refused call must leave the log unchanged."""
    codes: Counter[str] = Counter()
    for payload in payloads:
        before = logged_events(servers.store_file)
        outcome = await call_raw(servers.channel(rpc), rpc, [payload], bearer(OPERATOR_TOKEN))
        codes[outcome.code.name] += 1
        assert outcome.code not in _NEVER, (rpc.path, payload, outcome)
        assert "Traceback" not in outcome.message, (rpc.path, outcome)
        assert check(outcome), (rpc.path, payload, outcome)
        if outcome.code is not grpc.StatusCode.OK:
            assert logged_events(servers.store_file) == before, (rpc.path, payload, outcome)
    return codes


async def test_bytes_that_do_not_decode_get_invalid_argument_on_every_rpc(
    tmp_path: Path,
    command_server: ServerProcess,
    query_server: ServerProcess,
    chaos_report: Report,
) -> None:
    """Unary and streaming, both servers: MALFORMED_REQUEST, and nothing is written."""
    servers = _Servers(command_server, query_server, tmp_path / "events.db")

    def refused(outcome: Outcome) -> bool:
        return (outcome.code, outcome.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
        )

    try:
        calls = 0
        for rpc in ALL_RPCS:
            bad = malformed(rpc.request)
            calls += sum((await _send(servers, rpc, bad, refused)).values())
        assert await servers.serving()
    finally:
        await servers.close()
    chaos_report(
        "every undecodable request: INVALID_ARGUMENT / MALFORMED_REQUEST, log unchanged",
        f"{calls} calls over {len(ALL_RPCS)} RPCs, all MALFORMED_REQUEST",
    )


async def test_fuzzed_requests_on_every_rpc_never_get_unknown_or_internal(
    tmp_path: Path,
    command_server: ServerProcess,
    query_server: ServerProcess,
    chaos_report: Report,
) -> None:
    """Wild but well-formed values, unknown fields and random bytes: only named outcomes."""
    servers = _Servers(command_server, query_server, tmp_path / "events.db")
    per_rpc = scale(12, 300)
    codes: Counter[str] = Counter()
    try:
        for number, rpc in enumerate(ALL_RPCS):
            payloads = draw(request_bytes(rpc.request), per_rpc, seed=number)
            codes += await _send(servers, rpc, payloads, lambda _: True)
        assert await servers.serving()
    finally:
        await servers.close()
    assert sum(codes.values()) >= per_rpc * len(ALL_RPCS) // 2  # Hypothesis drew enough.
    chaos_report(
        "no UNKNOWN, no INTERNAL, no traceback, servers SERVING, refused calls change nothing",
        f"{sum(codes.values())} calls over {len(ALL_RPCS)} RPCs: "
        + ", ".join(f"{code} {count}" for code, count in codes.most_common()),
    )
