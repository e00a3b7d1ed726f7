"""The `cluster` scenario: uniform and bulk through 1, 2 and 3 command-server processes.

For each layout it starts its Pointex command servers on one fresh PostgreSQL schema, all
holding slice ranges by lease (docs/scale-out.md). In the `whole` layouts (1, 2 and 3
processes) the first to start holds every range and serves, and the others are standbys that
forward every call to it. In the `split` layout two servers split the ranges (`0-31` and
`32-63`): each decides the commands of its half's accounts, a call that reaches the other
half's account goes there, and a transfer between the halves takes its credit at the other
server. In the `balanced` layout two servers balance the ranges among themselves
(`POINTEX_SLICE_RANGES=balanced`): the same as split, with each server's share hashed over
the ranges rather than a contiguous half. The load generator spreads its callers (and its
three bulk streams) over all of them, round robin. Besides throughput and latency, each row
has the CPU each server process and PostgreSQL's processes used during the measured window,
read from /proc (bench/cpu.py), as a share of one core.

What it shows on one machine is what the cluster costs and what it buys: with one holder,
every command is decided on one event loop, and the standbys add a hop; split, two event
loops decide, at the price of hops and cross-server steps, and every commit still goes
through one position lock. docs/benchmarks.md has the figures and the note on what more
cores would change.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.accounts import setup_accounts
from bench.contenders import Contender, Plan, Running, new_schema, start
from bench.cpu import postgres_cpu_s, process_cpu_s
from bench.loadgen import LoadSpec, run_load
from bench.report import Row, median_row, summarize

SCENARIO: Final = "cluster"
WORKLOADS: Final = ("uniform", "bulk")
PROCESS_COUNTS: Final = (1, 2, 3)
# Each layout: the slice ranges of each server, in start order ("0-63": all of them).
WHOLE: Final = "0-63"
SPLIT: Final = ("0-31", "32-63")
BALANCED: Final = ("balanced", "balanced")
LAYOUTS: Final = (*(((WHOLE,) * count) for count in PROCESS_COUNTS), SPLIT, BALANCED)
LEASE_MS: Final = 3_000
# Bulk streams at every process count: one per server at three, so that each carries some.
BULK_STREAMS: Final = max(PROCESS_COUNTS)
_SERVING_TIMEOUT_S: Final = 60
_LOOK_AGAIN_S: Final = 0.1


@dataclass
class CpuWindow:
    """CPU seconds of the servers and of PostgreSQL at the start and at the end of a window."""

    servers: list[int]
    started: dict[int, float] = field(default_factory=dict)
    ended: dict[int, float] = field(default_factory=dict)
    postgres_started: float = 0.0
    postgres_ended: float = 0.0
    seconds: float = 0.0
    _start_s: float = 0.0

    def start(self) -> None:
        """Read the counters as the window opens."""
        self.started = {pid: process_cpu_s(pid) for pid in self.servers}
        self.postgres_started = postgres_cpu_s() or 0.0
        self._start_s = time.monotonic()

    def end(self) -> None:
        """Read the counters as the window closes."""
        self.ended = {pid: process_cpu_s(pid) for pid in self.servers}
        self.postgres_ended = postgres_cpu_s() or 0.0
        self.seconds = time.monotonic() - self._start_s

    def shares(self) -> tuple[list[float], float]:
        """Return each server's and PostgreSQL's CPU, in % of one core, over the window."""
        if not self.seconds:
            return [0.0] * len(self.servers), 0.0

        def share(cpu_s: float) -> float:
            return round(100 * cpu_s / self.seconds, 1)

        servers = [share(self.ended[pid] - self.started[pid]) for pid in self.servers]
        return servers, share(self.postgres_ended - self.postgres_started)


def _contender(plan: Plan, url: str, index: int, ranges: str) -> Contender:
    return Contender(
        name=f"pointex-cluster-{index}",
        store="postgres",
        module="pointex.server.command.main",
        args=("--listen", "127.0.0.1:0", "--store-url", url),
        scenarios=(SCENARIO,),
        env=(
            ("POINTEX_AUTH_TOKENS_FILE", str(plan.tokens_file)),
            ("POINTEX_LOG_FORMAT", "json"),
            ("POINTEX_LOG_LEVEL", "WARNING"),
            ("POINTEX_SLICE_LEASE_MS", str(LEASE_MS)),
            ("POINTEX_SLICE_RANGES", ranges),
        ),
    )


async def _serving(target: str) -> None:
    """Wait until the server reports SERVING: it holds the ranges, or knows who does."""
    async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(_SERVING_TIMEOUT_S):
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)


async def _balanced(dsn: str, schema: str, members: int) -> None:
    """Wait until `members` servers share the ranges evenly, then a renewal for the recovery."""
    connection = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        async with asyncio.timeout(_SERVING_TIMEOUT_S):
            while True:
                rows = await connection.fetch(
                    "SELECT owner_id, count(*) AS held FROM slice_leases "
                    "WHERE expires_at_us > extract(epoch FROM clock_timestamp()) * 1000000 "
                    "GROUP BY owner_id"
                )
                held = sorted(int(row["held"]) for row in rows)
                if len(held) == members and held[-1] - held[0] <= 1:
                    break
                await asyncio.sleep(_LOOK_AGAIN_S)
    finally:
        await connection.close()
    await asyncio.sleep(LEASE_MS / 3 / 1000)  # The last ranges taken are recovered by then.


async def _measure(
    servers: list[Running], layout: str, workload: str, options: Any, token: str
) -> Row:
    """Run one workload through every server; return its row with the CPU of each."""
    targets = ",".join(server.target for server in servers)
    spec = LoadSpec(
        targets, workload, options.callers, options.processes, options.warmup_s,
        options.measure_s, token, BULK_STREAMS, options.members,
    )  # fmt: skip
    cpu = CpuWindow([server.process.pid for server in servers])
    closer: list[threading.Timer] = []

    def window_opens() -> None:
        cpu.start()
        timer = threading.Timer(options.measure_s, cpu.end)
        timer.start()
        closer.append(timer)

    recorded = await asyncio.to_thread(run_load, spec, window_opens)
    for timer in closer:
        timer.join()
    shares, postgres = cpu.shares()
    summary = summarize(recorded, options.measure_s)
    return {
        "contender": "pointex",
        "store": "postgres",
        "scenario": SCENARIO,
        "workload": workload,
        "processes": len(servers),
        # "whole": the first server holds every range; "split": each holds its part;
        # "balanced": each holds its share.
        "layout": layout,
        "concurrency": BULK_STREAMS if workload == "bulk" else options.callers,
        "status": "ok" if summary["ok"] else "pending",
        **summary,
        # In start order (whole: the holder first, then the standbys).
        "server_cpu_pct": shares,
        "postgres_cpu_pct": postgres,
    }


async def run_cluster(
    options: Any,
    plan: Plan,
    token: str,
    env: dict[str, str],
    *,
    layouts: tuple[tuple[str, ...], ...] = LAYOUTS,
    workloads: tuple[str, ...] = WORKLOADS,
) -> list[Row]:
    """Run the cluster scenario for each layout; return one row per layout and load."""
    rows: list[Row] = []
    for parts in layouts:
        layout = "whole" if set(parts) == {WHOLE} else "balanced" if parts == BALANCED else "split"
        schema = new_schema(plan)
        url = f"{plan.pg_dsn}?schema={schema}"
        servers: list[Running] = []
        try:
            for index, ranges in enumerate(parts):  # One at a time: the first holds its ranges.
                contender = _contender(plan, url, index, ranges)
                servers.append(await start(contender, plan.scratch, env))
                await _serving(servers[-1].target)
            if layout == "balanced":
                await _balanced(plan.pg_dsn, schema, len(parts))
            await setup_accounts(servers[0].target, token, options.members)
            for workload in workloads:
                runs = [
                    await _measure(servers, layout, workload, options, token)
                    for _ in range(options.repeat)
                ]
                row = median_row(runs)
                rows.append(row)
                print(
                    f"[bench] cluster x{len(parts)} {layout} {workload}: "
                    f"{row['ops_per_s']:,.0f} ok/s, servers {row['server_cpu_pct']} % CPU, "
                    f"PostgreSQL {row['postgres_cpu_pct']} %",
                    flush=True,
                )
        finally:
            for server in reversed(servers):  # Standbys first: the ranges need not move.
                await server.stop()
    return rows
