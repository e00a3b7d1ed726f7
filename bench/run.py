"""`make bench`: every contender as a real process, every scenario, one report.

Run from the repository root: `python -m bench.run` (full: about 35-40 minutes) or
`python -m bench.run --quick` (every scenario in under 3 minutes, same JSON shape).
For each contender in turn it starts the process on a free loopback port, opens and funds the
accounts (untimed), runs the scenarios with the one load generator, stops the process, and
finally writes `bench/results/latest.json` and `bench/results/latest.png` and drops the
PostgreSQL schemas it created.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
import grpc

from bench import limits
from bench.accounts import SetupFailed, setup_accounts
from bench.cluster import SCENARIO as CLUSTER
from bench.cluster import run_cluster
from bench.contenders import (
    CONTENDER_NAMES,
    Contender,
    Plan,
    Running,
    StartFailed,
    build_contenders,
    read_counters,
    start,
)
from bench.loadgen import SCENARIOS, TRANSFER_SCENARIOS, LoadFailed, LoadSpec, run_load
from bench.market_run import run_market
from bench.replay import SCENARIO as REPLAY
from bench.replay import not_applicable, run_replay
from bench.report import (
    Row,
    counters_delta,
    median_row,
    ratios,
    summarize,
    targets,
    write_json,
    write_png,
)

REPO: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = REPO / "bench" / "results"
PG_DSN_DEFAULT: Final = "postgresql://postgres@127.0.0.1:5432/test"
_PG_TIMEOUT_S: Final = 10
# Full run: 26 scenario rows x 3 runs x (3 s warm-up + 15 s measured + ~2 s spawn), plus setup
# (each market run also starts its own processes and checks the books: a few seconds more),
# plus the replay: Pointex's filled log (one to two million events) caught up and rebuilt once
# per read store, three in all, at 15,000-30,000 events/s each way: about 5-15 minutes.
FULL: Final = {
    "warmup_s": 3, "measure_s": 15, "repeat": 3, "members": limits.members_count,
}  # fmt: skip
# Quick run: 25 rows x (1 s + 3 s + ~2.5 s) plus setup, under 3 minutes. Setup is what grows
# with the members (the eventsourcing peer opens about 300 accounts/s), so the quick run
# opens and funds a fifth of them; every scenario still runs, over at most 2,000 members.
# Its replay runs on the setup's log (about 12,000 events) into one read store per Pointex
# contender: a few seconds for both (173 s for the whole quick run, measured with it).
QUICK: Final = {"warmup_s": 1, "measure_s": 3, "repeat": 1, "members": limits.members_quick_count}
# The market costs about 9 s per contender (fresh processes, setup, the check). The quick run
# measures it on Pointex/PostgreSQL and both lock-based variants, and leaves out
# Pointex/SQLite so that the whole run keeps its margin under 3 minutes (171 s measured with
# it, on the shared 2-core development VM).
QUICK_MARKET_SKIP: Final = (("pointex", "sqlite"),)
# The server settings that move the figures: durability, memory for the log and its
# indexes, checkpoints, and the background work that can run during a measurement.
POSTGRES_SETTINGS: Final = (
    "fsync", "synchronous_commit", "full_page_writes", "wal_compression", "shared_buffers",
    "max_wal_size", "checkpoint_timeout", "autovacuum", "max_connections",
)  # fmt: skip
# Each value with its unit, as SHOW prints it (128MB, 5min).
_SETTINGS = """
SELECT name, current_setting(name) AS setting FROM pg_settings
WHERE name = ANY($1::text[]) ORDER BY name
"""
# Load-generator processes: see docs/benchmarks.md for the 1-versus-2 measurement.
LOADGEN_PROCESSES_DEFAULT: Final = 2
# Every scenario of the runner: the load generator's, the projection replay, which drives
# no load (bench/replay.py), and the cluster's process counts (bench/cluster.py).
RUN_SCENARIOS: Final = (*SCENARIOS, REPLAY, CLUSTER)
# The quick run leaves the cluster out (it starts six servers and sets accounts up three
# times: about a minute more than the quick run's three); `--scenarios cluster` runs it.
QUICK_SCENARIOS: Final = (*SCENARIOS, REPLAY)


@dataclass(frozen=True, slots=True)
class Options:
    """What to run, and for how long."""

    scenarios: tuple[str, ...]
    contenders: tuple[str, ...]
    warmup_s: int
    measure_s: int
    repeat: int
    callers: int
    processes: int
    members: int
    pg_dsn: str
    output: Path
    chart: bool
    # (contender, store) pairs whose market row this run leaves out.
    market_skip: tuple[tuple[str, str], ...] = ()
    # The replay runs on at least this many events (a shorter log is topped up first).
    replay_events_min: int = limits.replay_log_events_min
    # The quick run's replay: right after the setup, on the log it left (a few thousand
    # events, not the load's hundreds of thousands), into one read store per contender.
    replay_on_setup_log: bool = False
    replay_one_read_store: bool = False


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


async def machine_info(pg_dsn: str) -> dict[str, Any]:
    """Describe where the run happens: CPUs, Python, gRPC and PostgreSQL versions."""
    postgres_version = None
    postgres_settings: dict[str, str] = {}
    try:
        connection = await asyncpg.connect(pg_dsn, timeout=_PG_TIMEOUT_S)
        try:
            postgres_version = await connection.fetchval("SHOW server_version")
            rows = await connection.fetch(_SETTINGS, list(POSTGRES_SETTINGS))
            postgres_settings = {row["name"]: row["setting"] for row in rows}
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError) as error:
        _say(f"PostgreSQL not reachable: {error!r}")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "postgres_version": postgres_version,
        "postgres_settings": postgres_settings,
        # Other work on the machine skews every figure; the report says how busy it was.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def _pending(contender: Contender, scenarios: list[str], options: Options, note: str) -> list[Row]:
    return [
        {
            "contender": contender.name,
            "store": contender.store,
            "scenario": scenario,
            "concurrency": options.callers,
            "status": "pending",
            "note": note,
        }
        for scenario in scenarios
    ]


def _status(summary: Row) -> str:
    errors: dict[str, int] = summary["errors"]
    if summary["ok"] == 0 and errors and all(k.startswith("UNIMPLEMENTED") for k in errors):
        return "pending"  # The contender does not serve this RPC (yet).
    return "ok"


async def run_scenario(running: Running, scenario: str, options: Options, token: str) -> Row:
    """Drive one scenario against a running contender and return its row."""
    contender = running.contender
    bulk_streams = limits.bulk_streams_default
    spec = LoadSpec(
        running.target, scenario, options.callers, options.processes, options.warmup_s,
        options.measure_s, token, bulk_streams, options.members,
    )  # fmt: skip
    before: Counter[str] = Counter()
    recorded = await asyncio.to_thread(
        run_load, spec, lambda: before.update(read_counters(contender))
    )
    # The contender rewrites its counters every stats interval: wait two to see the last ones.
    await asyncio.sleep(2 * limits.lockbased_stats_interval_ms / 1000)
    delta = counters_delta(before, read_counters(contender))
    summary = summarize(recorded, options.measure_s)
    load = (
        f"{bulk_streams} stream x {limits.bulk_inflight_messages_max} msgs x "
        f"{limits.bulk_batch_commands_max}"
        if scenario == "bulk"
        else f"{options.callers} callers"
    )
    row: Row = {
        "contender": contender.name,
        "store": contender.store,
        "scenario": scenario,
        "concurrency": bulk_streams if scenario == "bulk" else options.callers,
        "load": load,
        "status": _status(summary),
        **summary,
        # A contender counts only what its design can meet: Pointex and the eventsourcing
        # peer take no row locks (no deadlock counter), and only the peer retries version
        # conflicts. A counter the contender does not keep is null, not zero.
        "deadlocks": delta.get("deadlocks"),
        "conflicts": delta.get("conflicts"),
        "retries": delta.get("retries"),
        "server_counters": delta,
    }
    _say(
        f"{contender.name}/{contender.store} {scenario}: {row['ops_per_s']:,.0f} ok/s, "
        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']}"
    )
    return row


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


async def run_contender(
    contender: Contender, options: Options, plan: Plan, token: str, set_up: set[str]
) -> list[Row]:
    """Run one contender's scenarios: the shared-store ones, then the market on its own.

    The replay needs projections: a contender without them gets an `n/a` row.
    """
    scenarios = [s for s in contender.scenarios if s in options.scenarios]
    rows: list[Row] = []
    if REPLAY in options.scenarios and REPLAY not in contender.scenarios:
        rows.append(not_applicable(contender))
    if plain := [s for s in scenarios if s != "market"]:
        rows += await _run_shared(contender, plain, options, plan, token, set_up=set_up)
    if "market" in scenarios and (contender.name, contender.store) not in options.market_skip:
        runs = [
            await run_market(contender, options, plan, token, _env()) for _ in range(options.repeat)
        ]
        rows.append(median_row(runs))
    return rows


async def _run_shared(
    contender: Contender,
    scenarios: list[str],
    options: Options,
    plan: Plan,
    token: str,
    *,
    set_up: set[str],
) -> list[Row]:
    """Start one contender, set its accounts up once, run its scenarios, stop it."""
    _say(f"starting {contender.name}/{contender.store}")
    try:
        running = await start(contender, plan.scratch, _env())
    except StartFailed as error:
        _say(str(error))
        return _pending(contender, scenarios, options, "did not start")
    rows: list[Row] = []
    try:
        # The replay's top-up transfers between the members too.
        needs_accounts = any(s in (*TRANSFER_SCENARIOS, "bulk", REPLAY) for s in scenarios)
        if needs_accounts and contender.setup_key not in set_up:
            _say(f"opening and funding {options.members} members (untimed)")
            setup_started_s = time.monotonic()
            await setup_accounts(running.target, token, options.members)
            _say(f"setup took {time.monotonic() - setup_started_s:.0f} s")
            set_up.add(contender.setup_key or "")
        replay = REPLAY in scenarios
        if replay and options.replay_on_setup_log:
            rows += await run_replay(running, options, plan, token, _env())
        for scenario in (s for s in scenarios if s != REPLAY):
            runs = [
                await run_scenario(running, scenario, options, token) for _ in range(options.repeat)
            ]
            rows.append(median_row(runs))
        if replay and not options.replay_on_setup_log:
            # After the load: the log the other scenarios filled is the one replayed.
            rows += await run_replay(running, options, plan, token, _env())
    except (SetupFailed, LoadFailed) as error:
        _say(f"{contender.name}/{contender.store}: {error}\n{running.log_tail()}")
        done = {row["scenario"] for row in rows}
        note = str(error).splitlines()[0][:120]
        rows += _pending(contender, [s for s in scenarios if s not in done], options, note)
    finally:
        await running.stop()
    return rows


async def drop_schemas(pg_dsn: str, schemas: list[str]) -> None:
    """Drop the PostgreSQL schemas this run created."""
    if not schemas:
        return
    connection = await asyncpg.connect(pg_dsn, timeout=_PG_TIMEOUT_S)
    try:
        for schema in schemas:
            # Names come from new_schema: "bench_" and hex digits only.
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


async def run(options: Options) -> dict[str, Any]:
    """Run every selected contender and scenario; return the result document."""
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    scratch = Path(tempfile.mkdtemp(prefix="pointex-bench-"))
    token = secrets.token_hex(24)
    tokens_file = scratch / "tokens"
    # The operator may call every command RPC on every account: one credential drives all.
    tokens_file.write_text(f"operator bench-operator {token}\n")
    plan = Plan(options.pg_dsn, scratch, tokens_file)
    machine = await machine_info(options.pg_dsn)
    rows: list[Row] = []
    set_up: set[str] = set()
    cluster: list[Row] = []
    try:
        for contender in build_contenders(plan, options.contenders):
            rows += await run_contender(contender, options, plan, token, set_up)
        if CLUSTER in options.scenarios and "pointex-postgres" in options.contenders:
            _say("cluster: 1, 2 and 3 command servers on PostgreSQL; 2 that split, 2 that balance")
            cluster = await run_cluster(options, plan, token, _env())
    finally:
        await drop_schemas(options.pg_dsn, plan.schemas)
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "machine": machine,
        "started_at": started_at,
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "warmup_s": options.warmup_s,
        # The replay has no measured window: it lasts as long as the log takes.
        "duration_s": dict.fromkeys(
            (s for s in options.scenarios if s != REPLAY), options.measure_s
        ),
        "repeat": options.repeat,
        "members": options.members,
        "rows": rows,
        # Pointex through 1, 2 and 3 command-server processes, and 2 splitting the ranges
        # (bench/cluster.py).
        "cluster": cluster,
        "ratios": ratios(rows),
        "targets": targets(rows),
    }


def _names(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return names


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Return the run's options from the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every scenario in under 3 minutes")
    parser.add_argument(
        "--scenarios",
        type=lambda text: _names(text, RUN_SCENARIOS, "scenarios"),
        help=f"comma-separated, from {','.join(RUN_SCENARIOS)} (default: all; --quick: all "
        "but cluster)",
    )
    parser.add_argument(
        "--contenders",
        type=lambda text: _names(text, CONTENDER_NAMES, "contenders"),
        default=CONTENDER_NAMES,
        help=f"comma-separated, from {','.join(CONTENDER_NAMES)} (default: all)",
    )
    parser.add_argument("--duration", type=int, help="measured seconds per scenario run")
    parser.add_argument("--warmup", type=int, help="warm-up seconds before each measurement")
    parser.add_argument("--repeat", type=int, help="runs per scenario; the median is reported")
    parser.add_argument("--callers", type=int, default=limits.callers_default)
    parser.add_argument("--processes", type=int, default=LOADGEN_PROCESSES_DEFAULT)
    parser.add_argument("--members", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pg-dsn", default=os.environ.get("POINTEX_TEST_PG_DSN", PG_DSN_DEFAULT))
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    options = Options(
        scenarios=args.scenarios or (QUICK_SCENARIOS if args.quick else RUN_SCENARIOS),
        contenders=args.contenders,
        warmup_s=args.warmup if args.warmup is not None else preset["warmup_s"],
        measure_s=args.duration if args.duration is not None else preset["measure_s"],
        repeat=args.repeat if args.repeat is not None else preset["repeat"],
        callers=args.callers,
        processes=args.processes,
        members=args.members if args.members is not None else preset["members"],
        pg_dsn=args.pg_dsn,
        output=args.output,
        chart=not args.no_chart,
        market_skip=QUICK_MARKET_SKIP if args.quick else (),
        replay_on_setup_log=args.quick,
        replay_one_read_store=args.quick,
    )
    if not 0 < options.repeat <= limits.repeat_max:
        parser.error(f"--repeat must be 1..{limits.repeat_max}")
    if options.measure_s <= 0 or options.warmup_s < 0:
        parser.error("--duration must be positive and --warmup not negative")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the JSON result and the PNG chart."""
    options = parse_options(argv)
    document = asyncio.run(run(options))
    write_json(options.output, document)
    _say(f"wrote {options.output}")
    if options.chart:
        chart = options.output.with_suffix(".png")
        write_png(chart, [row for row in document["rows"] if row.get("status") == "ok"])
        _say(f"wrote {chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
