"""PostgreSQL crashed (`-m immediate`) and started again mid-load, under both servers.

The cluster is the test's own (own_postgres.py). Sixteen clients move points through the
command server; the query server follows on a read store in the same cluster. The
database stops the way a power cut would stop it, stays down a while, and starts again
(crash recovery). Neither server is restarted. Clients see only UNAVAILABLE (the store is
down, or a commit's outcome is unknown) or their own deadline; once the database is back,
both servers serve again on their own, every call cut by the outage is retried with its
request id, and the log holds every acknowledged transfer once; the query server catches
up and finds I1 and I2 intact.
"""

from __future__ import annotations

import asyncio

import grpc

from pointex.v1 import command_service_pb2 as pb
from pointex.v1 import command_service_pb2_grpc
from tests.e2e.chaos.conftest import Report, scale
from tests.e2e.chaos.own_postgres import OwnPostgres
from tests.e2e.conftest import OPERATOR_TOKEN, StartCommandServer, StartQueryServer
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
from tests.e2e.test_query import Queries, assert_invariants

CLIENTS = 16
LOAD_S = 1.0
CALL_TIMEOUT_S = 3.0
SERVED_AGAIN_WITHIN_S = 30
# What a client may see while the database is down: the store's outage or an unknown
# commit (UNAVAILABLE, to retry), or its own deadline passing meanwhile.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


async def _served_again(target: str, members: list[str]) -> Attempt:
    """Transfer until one is acknowledged (the server reconnected on its own); return it."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = command_service_pb2_grpc.CommandServiceStub(channel)
        async with asyncio.timeout(SERVED_AGAIN_WITHIN_S):
            while True:
                request = pb.TransferPointsRequest(
                    request_id=rid(),
                    from_account_id=members[0],
                    to_account_id=members[1],
                    amount_points=1,
                )
                outcome = await transfer(stub, request, CALL_TIMEOUT_S)
                if outcome.reply is not None:
                    return Attempt(request, outcome)
                assert outcome.code in ALLOWED, outcome
                await asyncio.sleep(0.2)


async def test_a_database_crash_mid_load_is_survived_without_restarting_the_servers(
    own_postgres: OwnPostgres,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
    chaos_report: Report,
) -> None:
    """Only UNAVAILABLE or a deadline meanwhile; then both serve again and nothing is lost."""
    down_s = scale(2, 8)
    store_url = f"{own_postgres.dsn}?schema=events"
    command = await start_command_server(store_url, markets=False)
    query = await start_query_server(command.target, f"{own_postgres.dsn}?schema=reads")
    members = await open_funded_members(command.target)

    async def crash() -> None:
        await own_postgres.crash()
        await asyncio.sleep(down_s)
        await own_postgres.start()

    attempts = await under_load(
        command.target,
        members,
        crash,
        clients_count=CLIENTS,
        timeout_s=CALL_TIMEOUT_S,
        load_before_s=LOAD_S,
        load_after_s=LOAD_S,
        stop_within_s=10 * CALL_TIMEOUT_S,
    )
    codes = {a.first.code for a in attempts}
    assert codes <= ALLOWED, codes
    attempts.append(await _served_again(command.target, members))
    await retry_all_at_once(command.target, attempts)
    await retry_unknown_one_by_one(command.target, attempts)
    async with opened_store(store_url) as store:
        ledger = await read_settled_ledger(store)
    assert_settled_once(ledger)
    assert_conserved(ledger)
    assert_acknowledged_once(ledger, attempts)
    last = max(
        (a.final.reply.position for a in attempts if a.final.reply is not None),
        key=lambda position: position.token,
    )
    async with grpc.aio.insecure_channel(query.target) as channel:
        queries = Queries(channel, OPERATOR_TOKEN)
        audit = await assert_invariants(queries, last)
    assert command.process.returncode is None
    assert query.process.returncode is None
    unavailable = sum(1 for a in attempts if a.first.code is grpc.StatusCode.UNAVAILABLE)
    deadline = sum(1 for a in attempts if a.first.code is grpc.StatusCode.DEADLINE_EXCEEDED)
    chaos_report(
        "clients see UNAVAILABLE or their deadline only; both servers serve again without a "
        "restart; every acknowledged transfer once; I1 and I2 hold on the read side",
        f"PostgreSQL down {down_s} s under {CLIENTS} clients: {len(attempts)} calls, "
        f"{unavailable} UNAVAILABLE, {deadline} DEADLINE_EXCEEDED, all retried to a known end; "
        f"{audit.account_count} accounts audited, 0 violations",
    )
