"""Command servers that split the slice ranges between them, on one PostgreSQL (scale-out.md).

The first server takes ranges 0-31 and the second 32-63 (`POINTEX_SLICE_RANGES`); a third
stands by for 0-31. Each serves the accounts of its ranges, and any of them takes any call:
a call that reaches another server's account goes to its owner, and a transfer between two
servers' accounts takes its credit on the destination's. Under load from clients spread over
all three, the owner of 0-31 is killed: the standby takes its ranges over, and every
acknowledged transfer is in the log once, none open, points conserved. Under load again, a
standby for 32-63 joins and that half's holder stops cleanly: the newcomer holds it at once;
and the holder of 0-31 is paused past its lease: its standby takes over, and the resumed
holder is fenced off and stops. A rules change made through one server is in force on the
other within a renewal.
A live feed subscription at one server delivers what the other commits, gap-free. A bulk
message mixing both servers' accounts runs each command at its account's owner.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping

import grpc
import pytest

from pointex.client.positions import decode_global
from pointex.server.domain.values import TransferKind
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.process import EXIT_FENCED
from pointex.server.slices import range_of
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc, common_pb2, event_feed_pb2, event_feed_pb2_grpc
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
from tests.e2e.test_cluster import LEASE_MS, assert_exactly_once, under_cluster_load
from tests.e2e.test_commands import rid
from tests.e2e.test_crash import (
    assert_conserved,
    open_funded_members,
    opened_store,
    read_ledger,
    transfer,
)
from tests.e2e.test_slice_failover import answered_by, wait_answered_by_other_than

pytestmark = pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

LOW, HIGH = "0-31", "32-63"
# A rules change reaches the other servers at their next renewal (a third of LEASE_MS).
RULES_REACH_S = LEASE_MS / 1000 + 5.0


def _move(source: str, target: str, points: int) -> pb.TransferPointsRequest:
    return pb.TransferPointsRequest(
        request_id=rid(), from_account_id=source, to_account_id=target, amount_points=points
    )


async def start_split(
    start_command_server: StartCommandServer,
    store_url: str,
    *parts: str,
    extra_env: Mapping[str, str] | None = None,
) -> list[ServerProcess]:
    """Start a server for each part of the ranges, in order; each once it serves or forwards.

    A part is a set of ranges ("0-31"), or "balanced". `extra_env`: more settings for each.
    """
    servers = []
    for part in parts:
        server = await start_command_server(
            store_url,
            markets=False,
            extra_env={
                "POINTEX_SLICE_LEASE_MS": str(LEASE_MS),
                "POINTEX_SLICE_RANGES": part,
                **(extra_env or {}),
            },
        )
        await wait_serving(server.target)
        servers.append(server)
    return servers


def _halves(members: list[str]) -> tuple[list[str], list[str]]:
    """Return the members of the low half of the ranges, and those of the high half."""
    return [m for m in members if _in_low_half(m)], [m for m in members if not _in_low_half(m)]


def _in_low_half(account_id: str) -> bool:
    return range_of(f"account-{account_id}") < 32


async def test_two_servers_split_the_accounts_and_a_standby_takes_over_a_killed_half(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """Transfers across the two halves under load; the low half's owner killed mid-load."""
    low, high, standby = await start_split(start_command_server, store_url, LOW, HIGH, LOW)
    members = await open_funded_members(high.target)
    assert any(_in_low_half(m) for m in members)
    assert not all(_in_low_half(m) for m in members)

    async def kill() -> None:
        low.process.kill()
        await low.process.wait()

    attempts = await under_cluster_load([low, high, standby], members, kill)
    await assert_exactly_once(store_url, high, attempts)
    async with opened_store(store_url) as store:
        assert isinstance(store, PostgresEventStore)
        leases = await store.leases()
    owners = {lease.owner_id for lease in leases if lease.expires_in_ms > 0}
    assert len(owners) == 2, owners  # The high half's owner, and the standby for the low half.
    async with grpc.aio.insecure_channel(standby.target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        assert await answered_by(stub) in owners
    # Transfers between the halves completed, each credit taken by the other half's owner.
    crossed = [
        attempt
        for attempt in attempts
        if attempt.final.reply is not None
        and _in_low_half(attempt.request.from_account_id)
        != _in_low_half(attempt.request.to_account_id)
    ]
    assert crossed, "no transfer between the two halves went through"


async def test_pausing_a_halfs_holder_past_its_lease_under_load_fences_it_off(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """SIGSTOP the holder of 0-31 past its lease under load; resumed, it is fenced and stops.

    Its standby takes the half over; the resumed holder's appends are refused by the epoch
    fence, and it stops with exit code 4.
    """
    low, high, standby = await start_split(start_command_server, store_url, LOW, HIGH, LOW)
    members = await open_funded_members(high.target)
    async with grpc.aio.insecure_channel(standby.target) as channel:
        through_standby = command_service_pb2_grpc.CommandServiceStub(channel)
        paused_owner = await answered_by(through_standby)

        async def pause_past_the_lease() -> None:
            low.process.send_signal(signal.SIGSTOP)
            try:
                await wait_answered_by_other_than(through_standby, paused_owner)
            finally:
                low.process.send_signal(signal.SIGCONT)

        attempts = await under_cluster_load([low, high, standby], members, pause_past_the_lease)
    assert await asyncio.wait_for(low.process.wait(), STOP_TIMEOUT_S) == EXIT_FENCED
    assert "slice ranges taken over by another server" in low.log()
    await assert_exactly_once(store_url, high, attempts)


async def test_a_rules_change_at_one_server_is_in_force_at_the_other_within_a_renewal(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """SetProgramRules through either server; the other half's transfers obey it soon after."""
    low, high = await start_split(start_command_server, store_url, LOW, HIGH)
    members = await open_funded_members(low.target)
    lows, highs = _halves(members)
    limit = common_pb2.TransactionLimit(
        operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=10
    )
    async with (
        grpc.aio.insecure_channel(low.target) as to_low,
        grpc.aio.insecure_channel(high.target) as to_high,
    ):
        await command_service_pb2_grpc.CommandServiceStub(to_low).SetProgramRules(
            pb.SetProgramRulesRequest(
                request_id=rid(), rules=common_pb2.ProgramRules(limits=[limit])
            ),
            metadata=bearer(OPERATOR_TOKEN),
        )
        stubs = (
            command_service_pb2_grpc.CommandServiceStub(to_low),
            command_service_pb2_grpc.CommandServiceStub(to_high),
        )
        # Both halves, each through its own server: refused once the rules reached it.
        for stub, source, target in ((stubs[0], lows[0], highs[0]), (stubs[1], highs[1], lows[1])):
            async with asyncio.timeout(RULES_REACH_S):
                while True:
                    moved = await transfer(stub, _move(source, target, 11))
                    if moved.reply is None:
                        break
                    await asyncio.sleep(0.1)
            assert (moved.code, moved.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "LIMIT_EXCEEDED",
            ), moved
            assert (await transfer(stub, _move(source, target, 10))).reply is not None


async def test_a_server_joins_a_half_and_its_holder_leaves_under_load(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """A standby for 32-63 joins under load; the half's holder stops cleanly: it moves at once."""
    low, high = await start_split(start_command_server, store_url, LOW, HIGH)
    members = await open_funded_members(low.target)
    joined: list[ServerProcess] = []

    async def join_then_leave() -> None:
        joined.extend(await start_split(start_command_server, store_url, HIGH))
        assert await high.terminate() == 0

    attempts = await under_cluster_load([low, high], members, join_then_leave)
    await assert_exactly_once(store_url, low, attempts)
    assert "slice ranges not released" not in high.log()
    async with opened_store(store_url) as store:
        assert isinstance(store, PostgresEventStore)
        leases = await store.leases()
    owners = {lease.slice_range: lease.owner_id for lease in leases if lease.expires_in_ms > 0}
    async with grpc.aio.insecure_channel(joined[0].target) as channel:
        newcomer = await answered_by(command_service_pb2_grpc.CommandServiceStub(channel))
    assert {owners[r] for r in range(32, 64)} == {newcomer}
    assert newcomer not in {owners[r] for r in range(32)}


async def test_the_feed_at_one_server_delivers_the_others_commits_live_and_gap_free(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """Subscribed at the first server, a client sees what the second commits, in order."""
    low, high = await start_split(start_command_server, store_url, LOW, HIGH)
    members = await open_funded_members(low.target)
    highs = [m for m in members if not _in_low_half(m)]
    async with (
        grpc.aio.insecure_channel(low.target) as to_low,
        grpc.aio.insecure_channel(high.target) as to_high,
    ):
        feed = event_feed_pb2_grpc.EventFeedStub(to_low).Subscribe(
            event_feed_pb2.SubscribeRequest(), metadata=bearer(QUERY_TOKEN), timeout=30
        )
        positions: list[int] = []
        streams_seen: set[str] = set()

        async def read_until(stream_id: str) -> None:
            async for response in feed:
                for event in response.events.events:
                    positions.append(decode_global(event.position.token))
                    streams_seen.add(event.stream_id)
                if stream_id in streams_seen:
                    return

        await read_until(f"account-{highs[-1]}")  # Caught up with the setup.
        # Live: committed by the second server only, between its own accounts (one unit).
        moved = await transfer(
            command_service_pb2_grpc.CommandServiceStub(to_high), _move(highs[0], highs[1], 4)
        )
        assert moved.reply is not None, moved
        async with asyncio.timeout(RULES_REACH_S):
            await read_until(f"transfer-{moved.reply.transfer_id}")
        feed.cancel()
    assert positions == list(range(1, len(positions) + 1))  # Every event once, no gap.
    assert decode_global(moved.reply.position.token) in positions


async def test_a_bulk_message_runs_each_command_at_its_accounts_owner(
    store_url: str, start_command_server: StartCommandServer
) -> None:
    """A bulk message through one server, mixing both halves: each command at its owner."""
    low, _high = await start_split(start_command_server, store_url, LOW, HIGH)
    members = await open_funded_members(low.target)
    lows, highs = _halves(members)
    moves = [(highs[0], lows[0]), (lows[1], highs[1]), (highs[2], highs[3]), (lows[2], lows[3])]
    request = pb.ExecuteBulkRequest(
        commands=[
            pb.BulkCommand(
                transfer_points=pb.TransferPointsRequest(
                    request_id=rid(), from_account_id=a, to_account_id=b, amount_points=3
                )
            )
            for a, b in moves
        ]
    )
    async with grpc.aio.insecure_channel(low.target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        call = stub.ExecuteBulk(metadata=bearer(ACME_TOKEN))  # type: ignore[call-arg]
        await call.write(request)
        await call.done_writing()
        response = await call.read()
        assert isinstance(response, pb.ExecuteBulkResponse)
        assert [r.index for r in response.results] == [0, 1, 2, 3]
        assert all(r.HasField("ok") for r in response.results), response
        # A retry of the whole message is answered from the records, at both owners.
        again = stub.ExecuteBulk(metadata=bearer(ACME_TOKEN))  # type: ignore[call-arg]
        await again.write(request)
        await again.done_writing()
        replayed = await again.read()
        assert isinstance(replayed, pb.ExecuteBulkResponse)
        assert [r.ok.transfer_points.transfer_id for r in replayed.results] == [
            r.ok.transfer_points.transfer_id for r in response.results
        ]
        listed = await stub.ListSliceLeases(
            pb.ListSliceLeasesRequest(), metadata=bearer(OPERATOR_TOKEN)
        )
    assert len({lease.owner_id for lease in listed.leases}) == 2
    async with opened_store(store_url) as store:
        ledger, _ = await read_ledger(store)
    assert_conserved(ledger)
    transfers = [i for i in ledger.initiated.values() if i[0].kind == TransferKind.TRANSFER]
    assert len(transfers) == len(moves)
