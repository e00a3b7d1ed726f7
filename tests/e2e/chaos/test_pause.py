"""SIGSTOP the command server under load, then SIGCONT: deadlines expire cleanly, it recovers.

Sixteen clients with one-second deadlines move points when the server is frozen. Calls in
flight end DEADLINE_EXCEEDED at their deadline (never hang, never another code); once the
server runs again it answers new calls, and every call cut by the pause, retried with its
request id, ends known. The log then holds each acknowledged transfer once, none open, and
the points conserved.
"""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc
from tests.e2e.chaos.conftest import Report, scale
from tests.e2e.conftest import StartCommandServer
from tests.e2e.test_commands import rid
from tests.e2e.test_crash import (
    Attempt,
    assert_acknowledged_once,
    assert_conserved,
    assert_settled_once,
    open_funded_members,
    opened_store,
    read_settled_ledger,
    retry_all_at_once,
    retry_unknown_one_by_one,
    transfer,
    under_load,
)

CLIENTS = 16
CALL_TIMEOUT_S = 1.0
LOAD_S = 1.0


async def test_a_paused_command_server_times_calls_out_cleanly_and_recovers(
    store_url: str, start_command_server: StartCommandServer, chaos_report: Report
) -> None:
    """Frozen for a while under load: DEADLINE_EXCEEDED only, then service resumes as before."""
    pause_s = scale(3, 10)
    server = await start_command_server(store_url, markets=False)
    members = await open_funded_members(server.target)

    async def pause() -> None:
        server.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(pause_s)
        server.process.send_signal(signal.SIGCONT)

    attempts = await under_load(
        server.target,
        members,
        pause,
        clients_count=CLIENTS,
        timeout_s=CALL_TIMEOUT_S,
        load_before_s=LOAD_S,
        load_after_s=LOAD_S,
        stop_within_s=10 * CALL_TIMEOUT_S,
    )
    codes = {a.first.code for a in attempts}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}, codes
    timed_out = sum(1 for a in attempts if a.first.code is grpc.StatusCode.DEADLINE_EXCEEDED)
    assert timed_out >= CLIENTS  # Every client had a call in flight during the pause.
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        after = pb.TransferPointsRequest(
            request_id=rid(),
            from_account_id=members[0],
            to_account_id=members[1],
            amount_points=1,
        )
        outcome = await transfer(command_service_pb2_grpc.CommandServiceStub(channel), after)
        assert outcome.reply is not None, outcome  # Served as before the pause.
        attempts.append(Attempt(after, outcome))
    await retry_all_at_once(server.target, attempts)
    await retry_unknown_one_by_one(server.target, attempts)
    async with opened_store(store_url) as store:
        ledger = await read_settled_ledger(store)
    assert_settled_once(ledger)
    assert_conserved(ledger)
    assert_acknowledged_once(ledger, attempts)
    chaos_report(
        "calls in flight end DEADLINE_EXCEEDED, none hangs; the server serves again after "
        "SIGCONT; retried calls settle once, I1 holds",
        f"{'PostgreSQL' if store_url.startswith('postgres') else 'SQLite'}: paused {pause_s} s, "
        f"{len(attempts)} calls, {timed_out} DEADLINE_EXCEEDED, "
        f"{sum(1 for a in attempts if a.final.reply is not None)} acknowledged in the end",
    )
