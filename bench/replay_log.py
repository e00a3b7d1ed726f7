"""Measure the projection replay on a large log: its rate and each process's CPU per event.

`fill` starts a command server on a new PostgreSQL schema, opens and funds the bench's
members and fills the log with the bench's load generator (bulk transfers, then unary ones on
all members and on four hot ones), and prints the schema's name. `replay` starts a command
server on that log and, per round, a query server on a fresh read store (PostgreSQL or
SQLite): it times the catch-up from position 0 and then a full `RebuildProjections`, and
prints events/s with the CPU per event of the query server, the command server and
PostgreSQL over each; the read store is dropped after each round. `drop` drops the log.

Usage:
  .venv/bin/python -m bench.replay_log fill [--bulk-s 40] [--unary-s 10]
  .venv/bin/python -m bench.replay_log replay SCHEMA [--read-store postgres] [--rounds 1]
  .venv/bin/python -m bench.replay_log drop SCHEMA

To compare with an earlier commit, replay the same log on that commit's sources in turn with
this one's (the servers run with this interpreter and this process's PYTHONPATH):
  git worktree add <worktree> <commit>
  PYTHONPATH=<worktree>/server/src:<worktree>/client/src \
      .venv/bin/python -m bench.replay_log replay SCHEMA
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

import grpc

from bench import replay
from bench.accounts import setup_accounts
from bench.cluster import CpuWindow
from bench.contenders import Contender, Plan, Running, start
from bench.loadgen import LoadSpec, run_load
from bench.run import drop_schemas
from pointex.v1 import query_service_pb2_grpc

DSN = os.environ.get("POINTEX_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MEMBERS = 10_000
CALLERS = 64
LOAD_PROCESSES = 2
_NS_PER_S = 1_000_000_000
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _command(schema: str, tokens: Path) -> Contender:
    return Contender(
        "pointex",
        "postgres",
        "pointex.server.command.main",
        ("--listen", "127.0.0.1:0", "--store-url", f"{DSN}?schema={schema}"),
        (),
        env=(
            ("POINTEX_AUTH_TOKENS_FILE", str(tokens)),
            ("POINTEX_LOG_FORMAT", "json"),
            ("POINTEX_LOG_LEVEL", "WARNING"),
        ),
    )


def _window(query: Running, command: Running) -> CpuWindow:
    """Return a CPU window over the query server, the command server and PostgreSQL, open."""
    window = CpuWindow([query.process.pid, command.process.pid])
    window.start()
    return window


def _line(window: CpuWindow, what: str, events: int) -> str:
    """Close `window`; return events/s and µs of CPU per event of each process in it."""
    window.end()
    query, command = (window.ended[pid] - window.started[pid] for pid in window.servers)
    postgres = window.postgres_ended - window.postgres_started
    per_event = [f"{1e6 * cpu / events:.1f}" for cpu in (query, command, postgres)]
    return (
        f"{what}: {events:,} events in {window.seconds:.1f} s = "
        f"{events / window.seconds:,.0f} events/s; CPU µs/event: query {per_event[0]}, "
        f"command {per_event[1]}, PostgreSQL {per_event[2]}"
    )


async def fill(bulk_s: int, unary_s: int) -> None:
    """Fill a new schema's log; print its name."""
    schema = f"replay_{secrets.token_hex(4)}"
    scratch = Path(tempfile.mkdtemp(prefix="pointex-replay-"))
    token, tokens = _tokens(scratch)
    command = await start(_command(schema, tokens), scratch, dict(os.environ))
    try:
        await setup_accounts(command.target, token, MEMBERS)
        for scenario, seconds in (("bulk", bulk_s), ("uniform", unary_s), ("hot4", unary_s)):
            spec = LoadSpec(
                command.target, scenario, CALLERS, LOAD_PROCESSES, 1, seconds, token,
                members=MEMBERS,
            )  # fmt: skip
            await asyncio.to_thread(run_load, spec)
        head = await replay.settled_head(command.target, token)
    finally:
        await command.stop()
    print(f"{schema}: {head:,} events")


async def replay_rounds(schema: str, read_store: str, rounds: int) -> None:
    """Catch a fresh query server up with the log and rebuild, `rounds` times."""
    scratch = Path(tempfile.mkdtemp(prefix="pointex-replay-"))
    token, tokens = _tokens(scratch)
    plan = Plan(DSN, scratch, tokens)
    command = await start(_command(schema, tokens), scratch, dict(os.environ))
    try:
        head = await replay.settled_head(command.target, token)
        for _ in range(rounds):
            read_schema = f"replay_read_{secrets.token_hex(4)}"
            url = (
                f"{DSN}?schema={read_schema}"
                if read_store == "postgres"
                else f"sqlite:///{scratch / f'{read_schema}.db'}"
            )
            process = replay.query_process(command.target, plan, token, url)
            query = await start(process, scratch, dict(os.environ))
            try:
                await _catch_up_and_rebuild(query, command, token, head)
            finally:
                await query.stop()
                if read_store == "postgres":
                    await _drop(read_schema)
    finally:
        await command.stop()


async def _catch_up_and_rebuild(query: Running, command: Running, token: str, head: int) -> None:
    async with grpc.aio.insecure_channel(query.target) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        window = _window(query, command)
        await replay.wait_caught_up(stub, token, head)
        print(_line(window, "catch-up", head), flush=True)
        window = _window(query, command)
        status = await replay.rebuild(stub, token)
        line = _line(window, "rebuild", status.events_applied)
        # The rate the bench reports: the server's own start and end of the rebuild.
        elapsed_ns = status.finished_at.ToNanoseconds() - status.started_at.ToNanoseconds()
        rate = status.events_applied * _NS_PER_S / elapsed_ns
        print(f"{line} (server's own rate {rate:,.0f} events/s)", flush=True)


def _tokens(scratch: Path) -> tuple[str, Path]:
    token = secrets.token_hex(24)
    tokens = scratch / "tokens"
    tokens.write_text(f"operator bench-operator {token}\n")
    return token, tokens


async def _drop(schema: str) -> None:
    if not _SCHEMA.fullmatch(schema):
        raise SystemExit(f"not a schema name: {schema!r}")
    await drop_schemas(DSN, [schema])


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    filling = commands.add_parser("fill", help="fill a new schema's log")
    filling.add_argument("--bulk-s", type=int, default=40)
    filling.add_argument("--unary-s", type=int, default=10)
    replaying = commands.add_parser("replay", help="catch up and rebuild from a filled log")
    replaying.add_argument("schema")
    replaying.add_argument("--read-store", choices=("postgres", "sqlite"), default="postgres")
    replaying.add_argument("--rounds", type=int, default=1)
    dropping = commands.add_parser("drop", help="drop a filled log")
    dropping.add_argument("schema")
    args = parser.parse_args(argv)
    if args.command == "fill":
        asyncio.run(fill(args.bulk_s, args.unary_s))
    elif args.command == "replay":
        asyncio.run(replay_rounds(args.schema, args.read_store, args.rounds))
    else:
        asyncio.run(_drop(args.schema))
    return 0


if __name__ == "__main__":
    sys.exit(main())
