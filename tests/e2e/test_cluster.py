"""A cluster of three command servers on one PostgreSQL, under load (docs/scale-out.md).

One server holds every slice range; the other two are standbys that forward every call to
it. Clients spread over all three transfer points between members without pause. Then:

- the owner is killed (SIGKILL): a standby takes the ranges over once the leases expire,
  recovers, and serves, and the other standby forwards to it;
- the owner is paused (SIGSTOP) past its lease, then resumed: a standby took over meanwhile,
  and the resumed owner, whose appends the epoch fence refuses, stops with exit code 4;
- a fourth server joins under load, and the owner leaves (SIGTERM): it gives its ranges up
  at its last commit, and a standby takes them at once.

Each time, every unacknowledged call is retried with its request id until its outcome is
known, and then every acknowledged transfer is in the log exactly once, completed, with the
reply's position; no transfer is left open; points are conserved (I1) and no balance is
negative (I2); each owner's events follow the previous owner's.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest

from pointex.client.positions import decode_global
from pointex.server.domain.values import TransferKind
from pointex.server.process import EXIT_FENCED
from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc
from tests.e2e.conftest import (
    ACME_TOKEN,
    STOP_TIMEOUT_S,
    ServerProcess,
    StartCommandServer,
    StartQueryServer,
    wait_serving,
)
from tests.e2e.test_commands import rid
from tests.e2e.test_crash import (
    Attempt,
    assert_acknowledged_once,
    assert_conserved,
    assert_settled_once,
    client,
    open_funded_members,
    opened_store,
    read_ledger,
    read_settled_ledger,
    retry_all_at_once,
    retry_unknown_one_by_one,
    transfer,
)
from tests.e2e.test_query import Queries
from tests.e2e.test_slice_failover import answered_by, wait_answered_by_other_than

LEASE_MS = 2_000
CLIENTS_PER_SERVER = 3
LOAD_BEFORE_S = 1.5
# Past the lease, the takeover and the recovery: the load goes on through the new owner.
LOAD_AFTER_S = 2 * LEASE_MS / 1000 + 3.0
CALL_TIMEOUT_S = 3.0
PAUSE_AFTER_UNKNOWN_S = 0.1

pytestmark = pytest.mark.parametrize(
    "_backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def start_cluster(
    start_command_server: StartCommandServer, store_url: str, size: int = 3
) -> list[ServerProcess]:
    """Start `size` servers holding the ranges by lease; the first started owns them."""
    servers = []
    for _ in range(size):
        server = await start_command_server(
            store_url, markets=False, extra_env={"POINTEX_SLICE_LEASE_MS": str(LEASE_MS)}
        )
        await wait_serving(server.target)
        servers.append(server)
    return servers


async def under_cluster_load(
    servers: list[ServerProcess], members: list[str], fault: Callable[[], Awaitable[None]]
) -> list[Attempt]:
    """Load every server with clients, inflict `fault`, go on loading; return every attempt."""
    stop = asyncio.Event()
    rng = random.Random()
    targets = itertools.cycle([server.target for server in servers])
    clients = [
        asyncio.create_task(
            # A server down or changing hands: a pause after an unknown outcome, not a tight loop.
            client(
                next(targets),
                members,
                random.Random(rng.random()),
                stop,
                CALL_TIMEOUT_S,
                pause_after_unknown_s=PAUSE_AFTER_UNKNOWN_S,
            )
        )
        for _ in range(CLIENTS_PER_SERVER * len(servers))
    ]
    await asyncio.sleep(LOAD_BEFORE_S)
    await fault()
    await asyncio.sleep(LOAD_AFTER_S)
    stop.set()
    async with asyncio.timeout(4 * CALL_TIMEOUT_S):
        per_client = await asyncio.gather(*clients)
    return [attempt for attempts in per_client for attempt in attempts]


async def assert_exactly_once(
    store_url: str, survivor: ServerProcess, attempts: list[Attempt]
) -> None:
    """Retry the unknown through `survivor`; assert the log holds each acknowledged one once."""
    acknowledged = sum(attempt.first.reply is not None for attempt in attempts)
    assert acknowledged, "no transfer went through"
    await retry_all_at_once(survivor.target, attempts)
    async with opened_store(store_url) as store:
        assert_settled_once(await read_settled_ledger(store))
        await retry_unknown_one_by_one(survivor.target, attempts)
        ledger, _ = await read_ledger(store)
    assert_settled_once(ledger)
    assert_conserved(ledger)
    assert_acknowledged_once(ledger, attempts)
    # The transfers between members in the log are exactly the acknowledged ones.
    replied = {attempt.final.reply.transfer_id for attempt in attempts if attempt.final.reply}
    logged = {
        stream.removeprefix("transfer-")
        for stream, initiated in ledger.initiated.items()
        if initiated[0].kind == TransferKind.TRANSFER
    }
    assert logged == replied


async def epochs_by_range(pg_dsn: str, pg_schema: str) -> dict[int, list[tuple[int, int, int]]]:
    """Return, for each slice range, (epoch, first position, last position) in log order."""
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        rows = await connection.fetch(
            "SELECT slice / 16 AS slice_range, epoch, min(position) AS first, "
            "max(position) AS last FROM events GROUP BY 1, 2 ORDER BY 1, 3"
        )
    finally:
        await connection.close()
    spans: dict[int, list[tuple[int, int, int]]] = {}
    for row in rows:
        spans.setdefault(int(row["slice_range"]), []).append(
            (int(row["epoch"]), int(row["first"]), int(row["last"]))
        )
    return spans


async def assert_served_after_takeover(
    pg_dsn: str, pg_schema: str, attempts: list[Attempt]
) -> None:
    """Assert each range's owners wrote one after another, and the new owner took the load.

    Epochs are per range: ranges taken over together are at one epoch, but a range given up
    and taken again (two standbys racing) is one epoch further.
    """
    by_range = await epochs_by_range(pg_dsn, pg_schema)
    for slice_range, spans in by_range.items():
        assert [epoch for epoch, _, _ in spans] == sorted({e for e, _, _ in spans}), spans
        assert all(earlier[2] < later[1] for earlier, later in itertools.pairwise(spans)), (
            f"range {slice_range}: an owner's events after its successor's: {spans}"
        )
    later_epochs = [first for spans in by_range.values() for epoch, first, _ in spans if epoch > 1]
    assert later_epochs, "no range changed hands"
    takeover = min(later_epochs)
    after = [
        attempt
        for attempt in attempts
        if attempt.first.reply is not None
        and decode_global(attempt.first.reply.position.token) >= takeover
    ]
    assert after, "no call was acknowledged by the new owner during the load"


async def _owner_of(server: ServerProcess) -> str:
    async with grpc.aio.insecure_channel(server.target) as channel:
        return await answered_by(command_service_pb2_grpc.CommandServiceStub(channel))


async def _wait_new_owner(server: ServerProcess, old: str) -> str:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        return await wait_answered_by_other_than(stub, old)


async def test_killing_the_owner_under_load_loses_and_doubles_nothing(
    store_url: str, start_command_server: StartCommandServer, pg_dsn: str, pg_schema: str
) -> None:
    """SIGKILL the owner under load: a standby takes over, and every transfer settles once."""
    owner, *standbys = await start_cluster(start_command_server, store_url)
    members = await open_funded_members(standbys[0].target)
    first_owner = await _owner_of(standbys[0])
    assert first_owner == await _owner_of(owner)

    async def kill() -> None:
        owner.process.kill()
        await owner.process.wait()

    attempts = await under_cluster_load([owner, *standbys], members, kill)
    # Both standbys answer for the new owner: one of them, and the other forwarding to it.
    new_owner = await _wait_new_owner(standbys[0], first_owner)
    assert await _wait_new_owner(standbys[1], first_owner) == new_owner
    await assert_exactly_once(store_url, standbys[1], attempts)
    await assert_served_after_takeover(pg_dsn, pg_schema, attempts)


async def test_pausing_the_owner_past_its_lease_under_load_fences_it_off(
    store_url: str, start_command_server: StartCommandServer, pg_dsn: str, pg_schema: str
) -> None:
    """SIGSTOP the owner past its lease under load, then resume it: it is fenced and stops."""
    owner, *standbys = await start_cluster(start_command_server, store_url)
    members = await open_funded_members(standbys[0].target)
    first_owner = await _owner_of(owner)

    async def pause_past_the_lease() -> None:
        owner.process.send_signal(signal.SIGSTOP)
        try:
            await _wait_new_owner(standbys[0], first_owner)
        finally:
            owner.process.send_signal(signal.SIGCONT)

    attempts = await under_cluster_load([owner, *standbys], members, pause_past_the_lease)
    # Resumed, it finds its ranges taken over (at its renewal, or its first fenced append).
    assert await asyncio.wait_for(owner.process.wait(), STOP_TIMEOUT_S) == EXIT_FENCED
    assert "slice ranges taken over by another server" in owner.log()
    await assert_exactly_once(store_url, standbys[1], attempts)
    await assert_served_after_takeover(pg_dsn, pg_schema, attempts)


async def test_a_server_joins_and_the_owner_leaves_under_load(
    store_url: str, start_command_server: StartCommandServer, pg_dsn: str, pg_schema: str
) -> None:
    """A fourth server joins under load, then the owner stops cleanly: its ranges move at once."""
    owner, *standbys = await start_cluster(start_command_server, store_url)
    members = await open_funded_members(standbys[0].target)
    first_owner = await _owner_of(owner)
    joined: list[ServerProcess] = []

    async def join_then_leave() -> None:
        joined.extend(await start_cluster(start_command_server, store_url, size=1))
        assert await _owner_of(joined[0]) == first_owner  # It forwards, as the others do.
        assert await owner.terminate() == 0

    attempts = await under_cluster_load([owner, *standbys], members, join_then_leave)
    new_owner = await _wait_new_owner(joined[0], first_owner)
    assert new_owner == await _owner_of(standbys[0])
    assert "slice ranges not released" not in owner.log()
    await assert_exactly_once(store_url, joined[0], attempts)
    await assert_served_after_takeover(pg_dsn, pg_schema, attempts)


async def test_the_query_server_follows_the_cluster_through_whichever_server_is_up(
    store_url: str,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> None:
    """Given every server's address, the query server's feed outlives the holder it came in by."""
    owner, standby = await start_cluster(start_command_server, store_url, size=2)
    # A gRPC name with several addresses: the channel connects to the first that answers.
    query = await start_query_server(f"ipv4:{owner.target},{standby.target}")
    members = await open_funded_members(standby.target)
    first_owner = await _owner_of(owner)
    owner.process.kill()
    await owner.process.wait()
    await _wait_new_owner(standby, first_owner)
    async with (
        grpc.aio.insecure_channel(standby.target) as commands_channel,
        grpc.aio.insecure_channel(query.target) as queries_channel,
    ):
        commands = command_service_pb2_grpc.CommandServiceStub(commands_channel)
        moved = await transfer(
            commands,
            pb.TransferPointsRequest(
                request_id=rid(),
                from_account_id=members[0],
                to_account_id=members[1],
                amount_points=7,
            ),
        )
        assert moved.reply is not None, moved
        # The query server reaches the new holder's position: its feed moved to the standby.
        account = await Queries(queries_channel, ACME_TOKEN).account(
            members[0], moved.reply.position
        )
    assert account.available_points == moved.reply.from_available_points
