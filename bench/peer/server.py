"""The eventsourcing peer contender as a grpc.aio server of `pointex.v1.CommandService`.

Run: `python -m bench.peer.server --dsn postgresql://... --schema bench_peer`. It serves
the RPCs the lock-based contender serves (OpenAccount, MintPoints, IssuePoints,
TransferPoints, and ExecuteBulk for those commands) through the lock-based contender's own
front, so the two differ only in their store. It prints `eventsourcing peer listening on
port N` once serving, rewrites `--stats-file` (JSON counters: commands, rejections, version
conflicts, retries, aborts, errors by code) every 200 ms, and on SIGTERM stops, prints the
final counters as one JSON line and exits.

Why grpc.aio with a thread pool rather than grpc's thread-pool server: every other contender
is a grpc.aio server, so keeping that front holds the gRPC cost constant across contenders;
the library's calls block, so they run in `peer_threads_max` threads (one pooled PostgreSQL
connection each) and the event loop only parses, dispatches and replies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from bench import limits, loops
from bench.lockbased.server import (
    LedgerServicer,
    bulk_error,
    loopback,
    movement_of,
    reply_of,
    serve_ledger,
)
from bench.lockbased.store import Movement, Rejected, schema_name
from bench.peer.ledger import PeerLedger, PointsLedger, postgres_env
from pointex.v1 import command_service_pb2 as cs

_CONNECT_TIMEOUT_S = 10


class PeerServicer(LedgerServicer):
    """The lock-based contender's front, with a bulk batch handed to the ledger whole."""

    def __init__(self, ledger: PeerLedger) -> None:
        """Serve commands from `ledger`."""
        # The concurrent per-command path is not used (run_batch is overridden); its bound
        # is the thread pool's all the same.
        super().__init__(ledger, limits.peer_threads_max)
        self._peer = ledger

    async def run_batch(self, commands: Sequence[cs.BulkCommand]) -> list[cs.BulkResult]:
        """Parse the batch, let the ledger apply it as one unit of work, reply in order."""
        results: dict[int, cs.BulkResult] = {}
        parsed: list[tuple[int, Movement, str]] = []
        for index, command in enumerate(commands):
            try:
                movement, which = movement_of(command)
            except Rejected as error:
                results[index] = bulk_error(index, error)
                continue
            parsed.append((index, movement, which))
        outcomes = await self._peer.move_batch([movement for _, movement, _ in parsed])
        for (index, _, which), outcome in zip(parsed, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                results[index] = bulk_error(index, outcome)
            else:
                ok = cs.BulkOk(**{which: reply_of(which, outcome)})
                results[index] = cs.BulkResult(index=index, ok=ok)
        return [results[index] for index in range(len(commands))]


def create_schema(dsn: str, schema: str) -> None:
    """Create the run's schema; the library creates its table, type and index in it."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


async def serve(args: argparse.Namespace) -> None:
    """Build the application on its schema, serve until SIGTERM or SIGINT, then close it."""
    await asyncio.to_thread(create_schema, args.dsn, args.schema)
    # Constructing the application creates its table (blocking I/O): off the event loop.
    app = await asyncio.to_thread(PointsLedger, postgres_env(args.dsn, args.schema))
    ledger = PeerLedger(app)
    try:
        servicer = PeerServicer(ledger)
        await serve_ledger(servicer, ledger, args.listen, args.stats_file, "eventsourcing peer")
    finally:
        await asyncio.to_thread(ledger.close)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Return the contender's options."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.server", description=__doc__)
    parser.add_argument("--listen", type=loopback, default="127.0.0.1:0")
    parser.add_argument("--dsn", default=os.environ.get("POINTEX_TEST_PG_DSN", ""))
    parser.add_argument("--schema", type=schema_name, default="bench_peer")
    parser.add_argument("--stats-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn (or POINTEX_TEST_PG_DSN) is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the peer contender until signalled."""
    loops.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
