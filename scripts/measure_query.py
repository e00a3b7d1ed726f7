"""Measure the query side: rebuild replay speed on both read stores, and live lag.

Starts a command server (SQLite event store) and two query servers following it, one on a
SQLite read store and one on a PostgreSQL read store, all in a temporary directory. Then:

1. Loads the log with `--issues` IssuePoints commands in bulk (4 events each), waits until
   both query servers caught up, and runs a full RebuildProjections on each: replay speed is
   events applied / (finished_at - started_at), as the server reports it.
2. Live lag: `--clients` clients each send a TransferPoints every `1/--rate` s for
   `--seconds`; after each reply the client asks the query server for the account with
   `min_position` = the reply's position. Lag = time from the reply to that answer (it
   includes one query round trip, reported separately as the idle read latency).

Usage: .venv/bin/python scripts/measure_query.py [--issues 25000] [--pg-dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any  # The generated stubs are typed for sync channels.

import asyncpg
import grpc

from pointex.client.positions import decode_global
from pointex.v1 import command_service_pb2 as cpb
from pointex.v1 import command_service_pb2_grpc, common_pb2, query_service_pb2_grpc
from pointex.v1 import query_service_pb2 as qpb

OPERATOR = "operator-" + secrets.token_hex(16)
PARTNER = "partner-" + secrets.token_hex(16)
QUERY = "query-" + secrets.token_hex(16)
MERCHANTS = 50
MEMBERS = 500
PORT_LINE = re.compile(rb"listening on port (\d+)")


def md(token: str) -> tuple[tuple[str, str]]:
    """Call metadata for a bearer token."""
    return (("authorization", f"Bearer {token}"),)


async def start(
    module: str, env: dict[str, str], log: Path
) -> tuple[asyncio.subprocess.Process, str]:
    """Start a server on port 0 and return it with its target."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "POINTEX_LISTEN": "127.0.0.1:0", **env},
        )
    assert process.stdout is not None
    while line := await process.stdout.readline():
        if match := PORT_LINE.search(line):
            return process, f"127.0.0.1:{int(match.group(1))}"
    raise SystemExit(f"{module} did not start; see {log}")


async def open_accounts(
    commands: Any,
) -> tuple[list[str], list[str]]:
    """Open and fund the merchants, open the members."""
    merchants = [f"p:m-{i}-{uuid.uuid4().hex[:6]}" for i in range(MERCHANTS)]
    members = [f"p:a-{i}-{uuid.uuid4().hex[:6]}" for i in range(MEMBERS)]
    opens = [(m, common_pb2.ACCOUNT_KIND_MERCHANT) for m in merchants]
    opens += [(m, common_pb2.ACCOUNT_KIND_MEMBER) for m in members]
    await asyncio.gather(
        *(
            commands.OpenAccount(
                cpb.OpenAccountRequest(request_id=uuid.uuid4().hex, account_id=a, kind=k),
                metadata=md(PARTNER),
            )
            for a, k in opens
        )
    )
    await asyncio.gather(
        *(
            commands.MintPoints(
                cpb.MintPointsRequest(
                    request_id=uuid.uuid4().hex, merchant_account_id=m, amount_points=10**9
                ),
                metadata=md(OPERATOR),
            )
            for m in merchants
        )
    )
    return merchants, members


async def load(
    commands: Any,
    merchants: list[str],
    members: list[str],
    issues: int,
) -> common_pb2.Position:
    """Issue points in bulk; return the last position."""

    async def batches() -> AsyncIterator[cpb.ExecuteBulkRequest]:
        for start_index in range(0, issues, 1000):
            yield cpb.ExecuteBulkRequest(
                commands=[
                    cpb.BulkCommand(
                        issue_points=cpb.IssuePointsRequest(
                            request_id=uuid.uuid4().hex,
                            merchant_account_id=merchants[i % MERCHANTS],
                            member_account_id=members[i % MEMBERS],
                            amount_points=1000,
                        )
                    )
                    for i in range(start_index, min(start_index + 1000, issues))
                ]
            )

    last = common_pb2.Position()
    async for reply in commands.ExecuteBulk(batches(), metadata=md(PARTNER)):
        for result in reply.results:
            assert result.WhichOneof("outcome") == "ok", result
            last = max(last, result.ok.issue_points.position, key=lambda p: p.token)
    return last


async def rebuild_speed(queries: Any) -> tuple[int, float]:
    """Run a full rebuild; return (events, events per second)."""
    await queries.RebuildProjections(qpb.RebuildProjectionsRequest(), metadata=md(OPERATOR))
    while True:
        status = await queries.GetProjectionStatus(
            qpb.GetProjectionStatusRequest(), metadata=md(OPERATOR)
        )
        if status.rebuild.state != qpb.REBUILD_STATE_RUNNING:
            break
        await asyncio.sleep(0.2)
    assert status.rebuild.state == qpb.REBUILD_STATE_COMPLETED, status.rebuild
    seconds = (
        status.rebuild.finished_at.ToMicroseconds() - status.rebuild.started_at.ToMicroseconds()
    ) / 1e6
    return status.rebuild.events_applied, status.rebuild.events_applied / seconds


async def lag(
    commands: Any,
    queries: Any,
    members: list[str],
    args: argparse.Namespace,
) -> tuple[list[float], list[float]]:
    """Return (lags, idle read latencies) in milliseconds."""
    lags: list[float] = []
    idle: list[float] = []
    deadline = time.monotonic() + args.seconds

    async def client(index: int) -> None:
        source = members[index % MEMBERS]
        n = 0
        while time.monotonic() < deadline:
            began = time.monotonic()
            target = members[(index + 1 + n) % MEMBERS]
            n += 1
            if target == source:
                continue
            reply = await commands.TransferPoints(
                cpb.TransferPointsRequest(
                    request_id=uuid.uuid4().hex,
                    from_account_id=source,
                    to_account_id=target,
                    amount_points=1,
                ),
                metadata=md(PARTNER),
            )
            replied = time.monotonic()
            await queries.GetAccount(
                qpb.GetAccountRequest(account_id=target, min_position=reply.position),
                metadata=md(PARTNER),
                timeout=10,
            )
            lags.append((time.monotonic() - replied) * 1000)
            plain = time.monotonic()
            await queries.GetAccount(qpb.GetAccountRequest(account_id=target), metadata=md(PARTNER))
            idle.append((time.monotonic() - plain) * 1000)
            await asyncio.sleep(max(0.0, began + 1 / args.rate - time.monotonic()))

    await asyncio.gather(*(client(i) for i in range(args.clients)))
    return lags, idle


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which `fraction` of `values` lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def wait_caught_up(queries: Any, at: common_pb2.Position) -> float:
    """Wait (retrying past the 30 s bound) until the projections reach `at`; return seconds."""
    began = time.monotonic()
    while True:
        try:
            await queries.GetProjectionStatus(
                qpb.GetProjectionStatusRequest(min_position=at), metadata=md(OPERATOR), timeout=30
            )
            return time.monotonic() - began
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise


async def measure(
    name: str,
    commands: Any,
    query_channel: grpc.aio.Channel,
    *,
    members: list[str],
    last: common_pb2.Position,
    args: argparse.Namespace,
) -> None:
    """Print one read store's catch-up, rebuild speed and live lag."""
    queries = query_service_pb2_grpc.QueryServiceStub(query_channel)
    caught = await wait_caught_up(queries, last)
    events, speed = await rebuild_speed(queries)
    print(
        f"{name:8} read store: first catch-up of {decode_global(last.token)} events took "
        f"{caught:.1f} s ({decode_global(last.token) / caught:,.0f} events/s); "
        f"rebuild replayed {events} events at {speed:,.0f} events/s"
    )
    # The rebuild drops the replaced generation a little later; do not measure across it.
    await asyncio.sleep(12)
    lags, idle = await lag(commands, queries, members, args)
    print(
        f"{name:8} live lag over {len(lags)} transfers "
        f"({args.clients} clients x {args.rate}/s): "
        f"p50 {statistics.median(lags):.1f} ms, p99 {percentile(lags, 0.99):.1f} ms"
        f" (idle read p50 {statistics.median(idle):.1f} ms,"
        f" p99 {percentile(idle, 0.99):.1f} ms)"
    )


async def main(args: argparse.Namespace) -> None:
    """Run both measurements and print the figures."""
    folder = Path(tempfile.mkdtemp(prefix="pointex-measure-"))
    tokens = folder / "tokens"
    tokens.write_text(f"operator ops {OPERATOR}\npartner p {PARTNER}\nquery_server q {QUERY}\n")
    schema = f"pointex_measure_{secrets.token_hex(4)}"
    common = {"POINTEX_AUTH_TOKENS_FILE": str(tokens), "POINTEX_LOG_LEVEL": "WARNING"}
    command, command_target = await start(
        "pointex.server.command.main",
        {**common, "POINTEX_STORE_URL": f"sqlite:///{folder}/events.db"},
        folder / "command.log",
    )
    stores = {
        "sqlite": f"sqlite:///{folder}/read.db",
        "postgres": f"{args.pg_dsn}?schema={schema}",
    }
    processes = [command]
    try:
        async with grpc.aio.insecure_channel(command_target) as channel:
            commands = command_service_pb2_grpc.CommandServiceStub(channel)
            merchants, members = await open_accounts(commands)
            began = time.monotonic()
            last = await load(commands, merchants, members, args.issues)
            print(f"loaded {args.issues} issues in {time.monotonic() - began:.1f} s")
            # One query server at a time, so that they do not compete for the CPU.
            for name, url in stores.items():
                env = {
                    **common,
                    "POINTEX_READ_STORE_URL": url,
                    "POINTEX_COMMAND_TARGET": command_target,
                    "POINTEX_FEED_TOKEN": QUERY,
                }
                process, target = await start(
                    "pointex.server.query.main", env, folder / f"query-{name}.log"
                )
                processes.append(process)
                async with grpc.aio.insecure_channel(target) as query_channel:
                    await measure(
                        name, commands, query_channel, members=members, last=last, args=args
                    )
                process.terminate()
                await process.wait()
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()
        connection = await asyncpg.connect(args.pg_dsn)
        try:
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=25_000, help="IssuePoints to load")
    parser.add_argument(
        "--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL DSN"
    )
    parser.add_argument("--seconds", type=float, default=10, help="length of the lag run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--rate", type=float, default=25, help="transfers per second per client")
    asyncio.run(main(parser.parse_args()))
