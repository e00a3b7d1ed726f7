"""The eventsourcing peer contender works: a real process, real PostgreSQL, the real front.

Tiny sizes, a few seconds; no timing is asserted (SPEC §6 keeps performance out of tests).
What is proved: the peer starts on a free port, takes the benchmark's setup, serves
transfers that conserve points (read back through the library itself), refuses what the
lock-based contender refuses with the same reasons, replays a repeated request id (unary and
within a bulk batch), retries version conflicts, and reports its counters in the stats file
and on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import grpc
import pytest

from bench import limits
from bench.accounts import member_id, merchant_id, setup_accounts
from bench.peer.domain import Account, account_uuid
from bench.peer.ledger import PointsLedger, postgres_env
from bench.recorder import error_key
from bench.report import write_json
from bench.run import REPO, Options, run
from pointex.v1 import command_service_pb2 as cs
from pointex.v1 import command_service_pb2_grpc
from tests.e2e.conftest import ServerProcess, start_server

MEMBERS = 4
TRANSFERS = 60
CALLERS = 12


async def _start_peer(pg_dsn: str, schema: str, tmp_path: Path) -> ServerProcess:
    return await start_server(
        "bench.peer.server",
        tmp_path / "peer.log",
        {"PYTHONPATH": str(REPO)},
        "--dsn", pg_dsn, "--schema", schema, "--stats-file", str(tmp_path / "stats.json"),
    )  # fmt: skip


def _transfer(source: int, destination: int, amount_points: int = 1) -> cs.TransferPointsRequest:
    return cs.TransferPointsRequest(
        request_id=uuid.uuid4().hex,
        from_account_id=member_id(source),
        to_account_id=member_id(destination),
        amount_points=amount_points,
    )


async def _hot_transfers(stub: command_service_pb2_grpc.CommandServiceAsyncStub) -> list[str]:
    """Send TRANSFERS 1-point transfers among the MEMBERS accounts; return each outcome."""
    gate = asyncio.Semaphore(CALLERS)

    async def one(index: int) -> str:
        source = index % MEMBERS
        # Every other member in turn: never the source itself.
        destination = (source + 1 + (index // MEMBERS) % (MEMBERS - 1)) % MEMBERS
        request = _transfer(source, destination)
        async with gate:
            try:
                await stub.TransferPoints(request, timeout=limits.call_deadline_s)
            except grpc.aio.AioRpcError as error:
                return error_key(error)
        return "OK"

    return await asyncio.gather(*(one(i) for i in range(TRANSFERS)))


def _balances(pg_dsn: str, schema: str) -> dict[str, int]:
    """Read every benchmark account back through the library, as a user of it would."""
    app = PointsLedger(postgres_env(pg_dsn, schema))
    try:
        names = [member_id(i) for i in range(MEMBERS)]
        names += [merchant_id(k) for k in range(limits.merchants_count)]
        accounts: dict[str, int] = {}
        for name in names:
            account: Account = app.repository.get(account_uuid(name))
            accounts[name] = account.available_points
        return accounts
    finally:
        app.close()


async def _refusals(stub: command_service_pb2_grpc.CommandServiceAsyncStub) -> None:
    """The peer refuses with the lock-based contender's codes and reasons, and replays."""
    too_much = _transfer(0, 1, limits.member_funding_points * 10)
    unknown = _transfer(0, 1)
    unknown.to_account_id = "bench-m-nobody"
    for request, expected in (
        (too_much, "FAILED_PRECONDITION/INSUFFICIENT_POINTS"),
        (unknown, "NOT_FOUND/ACCOUNT_NOT_FOUND"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.TransferPoints(request, timeout=limits.call_deadline_s)
        assert error_key(refused.value) == expected
    repeated = _transfer(2, 3)
    first = await stub.TransferPoints(repeated, timeout=limits.call_deadline_s)
    again = await stub.TransferPoints(repeated, timeout=limits.call_deadline_s)
    assert again.from_available_points == first.from_available_points


async def _bulk_with_a_repeat(stub: command_service_pb2_grpc.CommandServiceAsyncStub) -> None:
    """A batch repeating a request id falls back to one command at a time, and replays."""
    repeated = cs.BulkCommand(transfer_points=_transfer(1, 2))
    too_much = cs.BulkCommand(transfer_points=_transfer(2, 3, limits.member_funding_points * 10))
    call = stub.ExecuteBulk(
        iter([cs.ExecuteBulkRequest(commands=[repeated, repeated, too_much])]),
        timeout=limits.call_deadline_s,
    )
    (response,) = [response async for response in call]
    first, again, refused = response.results
    assert again.ok.transfer_points.from_available_points == (
        first.ok.transfer_points.from_available_points
    )
    assert refused.error.reason == "INSUFFICIENT_POINTS"


@pytest.mark.postgres
@pytest.mark.timeout(60)
async def test_peer_serves_transfers_that_conserve_points(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """Hot transfers among 4 members end ok or ABORTED, and no point is made or lost."""
    server = await _start_peer(pg_dsn, pg_schema, tmp_path)
    try:
        await setup_accounts(server.target, "", MEMBERS)
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = command_service_pb2_grpc.CommandServiceStub(channel)
            outcomes = await _hot_transfers(stub)
            await _refusals(stub)
            await _bulk_with_a_repeat(stub)
    finally:
        code = await server.terminate()
    assert code == 0, server.log()
    assert set(outcomes) <= {"OK", "ABORTED/CONCURRENT_MODIFICATION"}, outcomes
    assert outcomes.count("OK") > 0

    balances = await asyncio.to_thread(_balances, pg_dsn, pg_schema)
    members = sum(balances[member_id(i)] for i in range(MEMBERS))
    assert members == MEMBERS * limits.member_funding_points
    minted_per_merchant = (MEMBERS // limits.merchants_count + 1) * limits.member_funding_points
    assert sum(balances.values()) == limits.merchants_count * minted_per_merchant

    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["aborts"] == outcomes.count("ABORTED/CONCURRENT_MODIFICATION")
    assert stats["replays"] == 2
    assert stats["rejected"] == 3
    assert stats["batch_fallbacks"] == 1
    # Every conflict is followed by a retry, except the last one of a command that gave up.
    assert stats["conflicts"] == stats["retries"] + stats["aborts"]
    assert server.process.stdout is not None
    last = (await server.process.stdout.read()).decode().strip().splitlines()[-1]
    assert json.loads(last) == {"stats": stats}


@pytest.mark.postgres
@pytest.mark.timeout(60)
async def test_runner_measures_the_peer(pg_dsn: str, tmp_path: Path) -> None:
    """The runner sets the peer up, drives it, and reports its conflicts and retries."""
    options = Options(
        scenarios=("uniform",),
        contenders=("eventsourcing-postgres",),
        warmup_s=0,
        measure_s=1,
        repeat=1,
        callers=4,
        processes=1,
        members=8,
        pg_dsn=pg_dsn,
        output=tmp_path / "latest.json",
        chart=False,
    )

    document = await run(options)
    write_json(options.output, document)

    (row,) = json.loads(options.output.read_text())["rows"]
    assert (row["contender"], row["store"], row["scenario"]) == (
        "eventsourcing",
        "postgres",
        "uniform",
    )
    assert row["status"] == "ok"
    assert row["ok"] > 0
    assert row["deadlocks"] is None
    assert isinstance(row["conflicts"], int)
    assert isinstance(row["retries"], int)
    assert row["server_counters"]["commands_ok"] > 0
