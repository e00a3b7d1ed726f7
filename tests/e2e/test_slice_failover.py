"""Command servers on one PostgreSQL, holding the slice ranges by lease (docs/scale-out.md).

The first server takes every range; a second one, started meanwhile, is a standby: it
listens at once and forwards every call to the first, unary and streaming, errors and all.
The first is paused (SIGSTOP) and its leases run out: the standby takes every range over, at
a new epoch, recovers and serves. The first is resumed with its account actors loaded and
before its next renewal: a transfer it decides on an account the standby changed is refused
by the stream's version (ABORTED), and one on accounts the standby did not touch, whose
versions all hold, by the database's epoch fence (UNAVAILABLE); neither writes anything. The
fence makes it renew at once, find its ranges lost and stop (exit code 4). The log then holds
every acknowledged transfer once, the points conserved, and no event of the first server's
epoch after the takeover.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from pointex.server.eventstore.port import SLICE_RANGES
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.process import EXIT_FENCED
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, event_feed_pb2, event_feed_pb2_grpc
from tests.e2e.cli_runner import run_cli
from tests.e2e.conftest import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    QUERY_TOKEN,
    STOP_TIMEOUT_S,
    ServerProcess,
    StartCommandServer,
    bearer,
    wait_serving,
)
from tests.e2e.test_commands import rid
from tests.e2e.test_crash import (
    assert_conserved,
    assert_settled_once,
    open_funded_members,
    opened_store,
    read_ledger,
    transfer,
)
from tests.e2e.test_event_feed import drain, error_reason

# The first server renews a third of the way through this: not before the test ends, so
# that, resumed, it still believes it holds its ranges.
LONG_LEASE_MS = 120_000
LEASE_MS = 2_000
TAKEOVER_TIMEOUT_S = 30.0
POLL_S = 0.2
POLL_CALL_TIMEOUT_S = 2.0


def _move(source: str, destination: str, amount: int) -> pb.TransferPointsRequest:
    return pb.TransferPointsRequest(
        request_id=rid(), from_account_id=source, to_account_id=destination, amount_points=amount
    )


async def epochs_in_log(pg_dsn: str, pg_schema: str) -> list[tuple[int, int, int]]:
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


async def expire_leases(pg_dsn: str, pg_schema: str) -> None:
    """End every lease now, as if its owner had been paused past it."""
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        await connection.execute("UPDATE slice_leases SET expires_at_us = 0")
    finally:
        await connection.close()


async def answered_by(stub: command_service_pb2_grpc.CommandServiceAsyncStub) -> str:
    """Return the owner id of the server that answers ListSliceLeases ("" if none does now)."""
    try:
        listed = await stub.ListSliceLeases(
            pb.ListSliceLeasesRequest(),
            metadata=bearer(OPERATOR_TOKEN),
            timeout=POLL_CALL_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError:
        return ""
    return str(listed.answered_by)


async def wait_answered_by_other_than(
    stub: command_service_pb2_grpc.CommandServiceAsyncStub, *owners: str
) -> str:
    """Poll until a server other than `owners` answers through `stub`; return its owner id."""
    async with asyncio.timeout(TAKEOVER_TIMEOUT_S):
        while True:
            owner = await answered_by(stub)
            if owner not in {"", *owners}:
                return owner
            await asyncio.sleep(POLL_S)


@pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_standby_forwards_then_takes_over_and_the_paused_owner_is_fenced_off(
    store_url: str,
    start_command_server: StartCommandServer,
    pg_dsn: str,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    """Standby forwards, takes over from the paused owner; the resumed owner's write is refused."""
    first = await start_command_server(
        store_url, markets=False, extra_env={"POINTEX_SLICE_LEASE_MS": str(LONG_LEASE_MS)}
    )
    await wait_serving(first.target)
    members = await open_funded_members(first.target)
    standby = await start_command_server(
        store_url, markets=False, extra_env={"POINTEX_SLICE_LEASE_MS": str(LEASE_MS)}
    )
    await wait_serving(standby.target)  # Once it knows where to forward.
    async with (
        grpc.aio.insecure_channel(first.target) as to_first_channel,
        grpc.aio.insecure_channel(standby.target) as to_standby_channel,
    ):
        to_first = command_service_pb2_grpc.CommandServiceStub(to_first_channel)
        to_standby = command_service_pb2_grpc.CommandServiceStub(to_standby_channel)
        first_owner = await answered_by(to_first)
        assert first_owner.startswith("command-")
        await _assert_standby_forwards(to_standby_channel, to_standby, first_owner, members)
        assert "waiting for slice ranges another server holds" in standby.log()

        first.process.send_signal(signal.SIGSTOP)
        try:
            await expire_leases(pg_dsn, pg_schema)
            second_owner = await wait_answered_by_other_than(to_standby, first_owner)
            after = await transfer(to_standby, _move(members[1], members[2], 7))
            assert after.reply is not None, after
            await _assert_owns_every_range(standby, to_standby, tmp_path)
        finally:
            first.process.send_signal(signal.SIGCONT)
        assert second_owner != first_owner

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
        assert (fenced.code, fenced.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "STORE_UNAVAILABLE",
        ), fenced
    # Refused by the fence, the first server renews at once, finds its ranges lost and stops.
    assert await asyncio.wait_for(first.process.wait(), STOP_TIMEOUT_S) == EXIT_FENCED
    assert "slice ranges taken over by another server" in first.log()
    async with opened_store(store_url) as store:
        assert await store.head_position() == head
        ledger, _ = await read_ledger(store)
        assert isinstance(store, PostgresEventStore)
        leases_now = await store.leases()
    assert_settled_once(ledger)
    assert_conserved(ledger)
    # Every event of the first server came before the takeover; the standby's after it.
    (old, old_first, old_last), (new, new_first, _) = await epochs_in_log(pg_dsn, pg_schema)
    assert (old, new) == (1, 2)
    assert old_first == 1
    assert old_last < new_first
    assert len(leases_now) == SLICE_RANGES
    assert {(lease.owner_id, lease.epoch) for lease in leases_now} == {(second_owner, 2)}


async def _assert_standby_forwards(
    channel: grpc.aio.Channel,
    stub: command_service_pb2_grpc.CommandServiceAsyncStub,
    owner: str,
    members: list[str],
) -> None:
    """Assert calls to the standby reach the owner: unary, refused, bidi and server streams."""
    assert await answered_by(stub) == owner
    moved = await transfer(stub, _move(members[0], members[1], 5))
    assert moved.reply is not None, moved
    # The owner's refusal comes back as the owner gave it, reason and all.
    refused = await transfer(stub, _move(members[0], members[1], 10**9))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    ), refused
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await stub.TransferPoints(_move(members[0], members[1], 1), timeout=POLL_CALL_TIMEOUT_S)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async def batches() -> AsyncIterator[pb.ExecuteBulkRequest]:
        yield pb.ExecuteBulkRequest(
            commands=[pb.BulkCommand(transfer_points=_move(members[2], members[3], 1))]
        )
        yield pb.ExecuteBulkRequest(
            commands=[pb.BulkCommand(transfer_points=_move(members[3], members[2], 0))]
        )

    results = [
        result
        async for response in stub.ExecuteBulk(
            batches(), metadata=bearer(ACME_TOKEN), timeout=TAKEOVER_TIMEOUT_S
        )
        for result in response.results
    ]
    assert [result.WhichOneof("outcome") for result in results] == ["ok", "error"]
    assert results[1].error.reason == "AMOUNT_NOT_POSITIVE"
    feed = event_feed_pb2_grpc.EventFeedStub(channel).Subscribe(
        event_feed_pb2.SubscribeRequest(),
        metadata=bearer(QUERY_TOKEN),
        timeout=TAKEOVER_TIMEOUT_S,
    )
    delivered: list[int] = []
    async for response in feed:
        delivered.extend(event.slice for event in response.events.events)
        if len(delivered) >= len(members):
            feed.cancel()
            break
    assert len(delivered) >= len(members)


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
    assert {lease.owner_address for lease in listed.leases} == {server.target}
    assert all(lease.expires_in_ms > 0 for lease in listed.leases)
    # `pointex status` shows them, one row per owner and epoch.
    status = await run_cli(
        tmp_path, "status", "--token", OPERATOR_TOKEN,
        "--command-target", server.target, "--query-target", server.target,
    )  # fmt: skip
    assert f"{listed.answered_by} (answered)" in status.stdout, status
    assert server.target in status.stdout, status
    assert "0-63" in status.stdout, status


@pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_stopping_standby_ends_the_streams_it_relays_with_shutting_down(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """SIGTERM to a standby ends a relayed feed subscription at once, as the holder's would."""
    leases = {"POINTEX_SLICE_LEASE_MS": str(LEASE_MS)}
    holder = await start_command_server(store_url, markets=False, extra_env=leases)
    await wait_serving(holder.target)
    await open_funded_members(holder.target)
    standby = await start_command_server(store_url, markets=False, extra_env=leases)
    await wait_serving(standby.target)
    async with grpc.aio.insecure_channel(standby.target) as channel:
        call = event_feed_pb2_grpc.EventFeedStub(channel).Subscribe(
            event_feed_pb2.SubscribeRequest(),
            metadata=bearer(QUERY_TOKEN),
            timeout=TAKEOVER_TIMEOUT_S,
        )
        first = await call.read()
        assert isinstance(first, event_feed_pb2.SubscribeResponse), first
        standby.process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await drain(call)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(ended.value) == "SHUTTING_DOWN"
    # The grace period is 10 s by default; ending the stream lets the standby exit before.
    assert await asyncio.wait_for(standby.process.wait(), 8) == 0
