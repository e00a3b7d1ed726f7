"""Two command servers on one PostgreSQL, holding the slice ranges by lease (docs/scale-out.md).

The first server takes every range; a second one, started meanwhile, waits as a standby. The
first is paused (SIGSTOP) past its lease: the standby takes every range over, at a new epoch,
recovers and serves. The first is resumed with its account actors loaded: a transfer it
decides on an account the standby changed is refused by the stream's version (ABORTED), and
one on accounts the standby did not touch, whose versions all hold, by the database's epoch
fence (UNAVAILABLE); neither writes anything. The log then holds every acknowledged transfer
once, the points conserved, and no event of the first server's epoch after the takeover; the
first server, holding none of its ranges, reports NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointex.server.eventstore.postgres.leases import SLICE_RANGES
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc
from tests.e2e.cli_runner import run_cli
from tests.e2e.conftest import OPERATOR_TOKEN, ServerProcess, StartCommandServer, bearer
from tests.e2e.test_commands import rid
from tests.e2e.test_crash import (
    assert_conserved,
    assert_settled_once,
    open_funded_members,
    opened_store,
    read_ledger,
    transfer,
)

LEASE_MS = 2_000
# Longer than a renewal's period (a third of the lease): the first server keeps its ranges
# through renewals, and the standby goes on waiting.
STANDBY_WAIT_S = 1.5
TAKEOVER_TIMEOUT_S = 30.0
# The first server renews a third of the way through its lease: a few renewals' time.
RENEWAL_POLLS = 50
RENEWAL_POLL_S = 0.1


def _move(source: str, destination: str, amount: int) -> pb.TransferPointsRequest:
    return pb.TransferPointsRequest(
        request_id=rid(), from_account_id=source, to_account_id=destination, amount_points=amount
    )


async def _epochs(pg_dsn: str, pg_schema: str) -> list[tuple[int, int, int]]:
    """Return (epoch, first position, last position) of each epoch in the log, in order."""
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        rows = await connection.fetch(
            "SELECT epoch, min(position) AS first, max(position) AS last FROM events "
            "GROUP BY epoch ORDER BY first"
        )
    finally:
        await connection.close()
    return [(int(row["epoch"]), int(row["first"]), int(row["last"])) for row in rows]


@pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_paused_owner_is_fenced_off_once_a_standby_took_over(
    store_url: str,
    start_command_server: StartCommandServer,
    pg_dsn: str,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    """Standby waits, takes over from the paused owner; the resumed owner's write is refused."""
    leases = {"POINTEX_SLICE_LEASE_MS": str(LEASE_MS)}
    first = await start_command_server(store_url, markets=False, extra_env=leases)
    members = await open_funded_members(first.target)
    async with grpc.aio.insecure_channel(first.target) as channel:
        to_first = command_service_pb2_grpc.CommandServiceStub(channel)
        before = await transfer(to_first, _move(members[0], members[1], 5))
        assert before.reply is not None, before

        async def start_standby() -> ServerProcess:
            return await start_command_server(store_url, markets=False, extra_env=leases)

        standby = asyncio.create_task(start_standby())
        await asyncio.sleep(STANDBY_WAIT_S)
        assert not standby.done(), "the standby started while the first server held the ranges"

        first.process.send_signal(signal.SIGSTOP)
        try:
            second = await asyncio.wait_for(standby, TAKEOVER_TIMEOUT_S)
            async with grpc.aio.insecure_channel(second.target) as other:
                to_second = command_service_pb2_grpc.CommandServiceStub(other)
                after = await transfer(to_second, _move(members[1], members[2], 7))
                assert after.reply is not None, after
                await _assert_owns_every_range(second, to_second, tmp_path)
        finally:
            first.process.send_signal(signal.SIGCONT)

        async with opened_store(store_url) as store:
            head = await store.head_position()
        # The first server's actors still hold the balances it saw, and it decides on them.
        # A member the standby moved since: the stream's version refuses the append.
        stale = await transfer(to_first, _move(members[1], members[0], 3))
        assert (stale.code, stale.reason) == (
            grpc.StatusCode.ABORTED,
            "CONCURRENT_MODIFICATION",
        ), stale
        # Members the standby did not touch: every version holds, and the epoch refuses it.
        fenced = await transfer(to_first, _move(members[3], members[4], 3))
        assert fenced.reply is None, fenced
        assert fenced.code == grpc.StatusCode.UNAVAILABLE, fenced
    async with opened_store(store_url) as store:
        assert await store.head_position() == head
        ledger, _ = await read_ledger(store)
        assert isinstance(store, PostgresEventStore)
        leases_now = await store.leases()
    assert_settled_once(ledger)
    assert_conserved(ledger)
    # Every event of the first server came before the takeover; the standby's after it.
    (old, old_first, old_last), (new, new_first, _) = await _epochs(pg_dsn, pg_schema)
    assert (old, new) == (1, 2)
    assert old_first == 1
    assert old_last < new_first
    assert len(leases_now) == SLICE_RANGES
    assert {lease.epoch for lease in leases_now} == {2}
    assert "slice ranges taken over by another server" in await _first_log_when_renewed(first)
    # Holding none of its ranges, the first server reports NOT_SERVING: a load balancer
    # sends its calls to the standby that replaced it.
    assert await _health_when_renewed(first) == health_pb2.HealthCheckResponse.NOT_SERVING


async def _assert_owns_every_range(
    server: ServerProcess, stub: command_service_pb2_grpc.CommandServiceAsyncStub, tmp_path: Path
) -> None:
    """Assert `server` holds every range at epoch 2, as ListSliceLeases and the CLI say."""
    listed = await stub.ListSliceLeases(
        pb.ListSliceLeasesRequest(), metadata=bearer(OPERATOR_TOKEN)
    )
    assert listed.answered_by.startswith("command-")
    assert [lease.slice_range for lease in listed.leases] == list(range(SLICE_RANGES))
    assert {(lease.owner_id, lease.epoch) for lease in listed.leases} == {(listed.answered_by, 2)}
    assert all(lease.expires_in_ms > 0 for lease in listed.leases)
    # `pointex status` shows them, one row per owner and epoch.
    status = await run_cli(
        tmp_path, "status", "--token", OPERATOR_TOKEN,
        "--command-target", server.target, "--query-target", server.target,
    )  # fmt: skip
    assert f"{listed.answered_by} (answered)" in status.stdout, status
    assert "0-63" in status.stdout, status


async def _health_when_renewed(server: ServerProcess) -> int:
    """Return the server's health, once it no longer reports SERVING (or after a while)."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = health_pb2.HealthCheckResponse.SERVING
        for _ in range(RENEWAL_POLLS):
            reply = await stub.Check(health_pb2.HealthCheckRequest())
            status = reply.status
            if status != health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(RENEWAL_POLL_S)
    return int(status)


async def _first_log_when_renewed(first: ServerProcess) -> str:
    """Return the first server's log once it has renewed (and found its ranges lost)."""
    log = first.log()
    for _ in range(RENEWAL_POLLS):
        if "taken over" in log:
            break
        await asyncio.sleep(RENEWAL_POLL_S)
        log = first.log()
    return log
