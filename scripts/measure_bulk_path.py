"""Measure the command path's CPU per bulk transfer, in one process and without gRPC.

Opens a merchant and 2,000 members on a fresh PostgreSQL schema (dropped at the end),
funds them, then keeps 8 batches of 500 uniform 1-point transfers in flight through
`CommandHandlers.transfer_many`, as the bulk scenario's stream keeps 8 messages of 500, for
`--seconds` after 2 s of warm-up. Prints transfers per second and the process's CPU time
per transfer (building the requests excluded): the actors, the decisions, the codec, the
group commit and the store adapter, which the bulk scenario's server runs on one event
loop next to gRPC. The process runs on uvloop with the command server's collector settings.

With `--codec`, it instead times the encoding of one transfer's three events (a debit, a
credit and the transfer's record), best of five timings of 20,000.

Usage: .venv/bin/python scripts/measure_bulk_path.py [--dsn DSN] [--seconds S] [--codec]

To compare with an earlier commit, run the same script on that commit's sources:
  git worktree add <worktree> <commit>
  PYTHONPATH=<worktree>/server/src:<worktree>/client/src \
      .venv/bin/python scripts/measure_bulk_path.py
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import secrets
import time
import timeit

import asyncpg
import uvloop

from pointex.server import limits
from pointex.server.actors.account_actor import Decide
from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.handlers import CommandHandlers, TransferRequest
from pointex.server.command.bootstrap import start_core
from pointex.server.domain.commands import MintPoints, OpenAccount
from pointex.server.domain.events import (
    PointsCredited,
    PointsDebited,
    TransferInitiated,
)
from pointex.server.domain.values import OPERATOR, AccountKind, Instant, Principal, Role
from pointex.server.domain.values import TransferKind as Kind
from pointex.server.eventstore import codec
from pointex.server.eventstore.postgres.store import PostgresEventStore

DSN = "postgresql://postgres@127.0.0.1:5432/test"
ACME = Principal("acme", Role.PARTNER)
MEMBERS = 2_000
BATCHES_IN_FLIGHT = 8
BATCH_TRANSFERS = 500
WARMUP_S = 2.0
FUNDS_POINTS = 10**6
ENCODINGS = 20_000
REPEATS = 5


def main() -> None:
    """Parse the options and run the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DSN, help="a PostgreSQL to use (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--codec", action="store_true", help="time the codec alone")
    args = parser.parse_args()
    if args.codec:
        _measure_codec()
        return
    # As the command server does (command/main.py).
    gc.freeze()
    gc.set_threshold(
        limits.gc_young_allocations_max,
        limits.gc_young_collections_max,
        limits.gc_middle_collections_max,
    )
    uvloop.run(_measure(args.dsn, args.seconds))


def _measure_codec() -> None:
    """Print the time to encode the three events of one transfer committed in one unit."""
    transfer_id = secrets.token_hex(16)
    events = (
        PointsDebited("u1", transfer_id, Kind.TRANSFER, "u2", 1, "", 999, Instant(1)),
        PointsCredited("u2", transfer_id, Kind.TRANSFER, "u1", 1, "", 1_001),
        TransferInitiated(
            transfer_id, Kind.TRANSFER, "u1", "u2", 1, "", transfer_id, 999, completed=True
        ),
    )

    def encode_all() -> None:
        for event in events:
            codec.encode(event)

    best = min(timeit.repeat(encode_all, number=ENCODINGS, repeat=REPEATS))
    print(f"{best / ENCODINGS * 1e6:.2f} µs to encode a transfer's three events")


async def _measure(dsn: str, seconds: float) -> None:
    schema = f"pointex_measure_{secrets.token_hex(4)}"
    store = PostgresEventStore(dsn, schema=schema)
    await store.open()
    try:
        core = start_core(store, resident_max=limits.actors_resident_max)
        await core.program.load()
        handlers = CommandHandlers(store, core.actors, core.lookup, core.runner, core.program)
        members = await _fund(handlers, core.actors)
        rng = random.Random(secrets.randbits(32))  # noqa: S311 - load, not secrets.
        spent = _Spent()
        measure_from = time.monotonic() + WARMUP_S
        stop = measure_from + seconds

        async def caller() -> None:
            while time.monotonic() < stop:
                started = time.process_time()
                requests = [_transfer(rng, members) for _ in range(BATCH_TRANSFERS)]
                spent.building_s += time.process_time() - started
                outcomes = await handlers.transfer_many(requests)
                assert not any(isinstance(outcome, BaseException) for outcome in outcomes)
                spent.count(len(requests), measuring=time.monotonic() >= measure_from)

        await asyncio.gather(*(caller() for _ in range(BATCHES_IN_FLIGHT)))
        cpu_s = time.process_time() - spent.cpu_at_start_s - spent.building_s
        wall_s = time.monotonic() - spent.wall_at_start_s
        print(
            f"{spent.transfers / wall_s:,.0f} transfers/s, "
            f"{cpu_s / spent.transfers * 1e6:.1f} µs of CPU per transfer"
        )
        await core.runner.stop()
        await core.committer.stop()
        await core.lookup.stop()
    finally:
        await store.close()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # Hex only.
        finally:
            await connection.close()


class _Spent:
    """The measured window: when it started, and what it holds."""

    def __init__(self) -> None:
        self.cpu_at_start_s = 0.0
        self.wall_at_start_s = 0.0
        self.building_s = 0.0  # Building requests, not the command path's work.
        self.transfers = 0
        self.started = False

    def count(self, transfers: int, *, measuring: bool) -> None:
        """Count a batch that ended; the first to end in the window starts it."""
        if not measuring:
            return
        if not self.started:
            self.started = True
            self.cpu_at_start_s = time.process_time()
            self.wall_at_start_s = time.monotonic()
            self.building_s = 0.0
            return
        self.transfers += transfers


async def _fund(handlers: CommandHandlers, actors: AccountActors) -> list[str]:
    """Open the merchant and the members, and issue each member its funds."""
    ask = actors.ask
    await ask("m", Decide(OpenAccount(OPERATOR, "m", AccountKind.MERCHANT, "acme", "")))
    await ask("m", Decide(MintPoints(OPERATOR, "m", FUNDS_POINTS * MEMBERS, "")))
    members = [f"u{i}" for i in range(MEMBERS)]
    for first in range(0, MEMBERS, BATCH_TRANSFERS):
        chunk = members[first : first + BATCH_TRANSFERS]
        await asyncio.gather(
            *(
                ask(member, Decide(OpenAccount(OPERATOR, member, AccountKind.MEMBER, "acme", "")))
                for member in chunk
            )
        )
        issues = [
            TransferRequest(ACME, secrets.token_hex(16), Kind.ISSUE, "m", member, FUNDS_POINTS, "")
            for member in chunk
        ]
        outcomes = await handlers.transfer_many(issues)
        assert not any(isinstance(outcome, BaseException) for outcome in outcomes)
    return members


def _transfer(rng: random.Random, members: list[str]) -> TransferRequest:
    source, target = rng.sample(members, 2)
    return TransferRequest(ACME, secrets.token_hex(16), Kind.TRANSFER, source, target, 1, "")


if __name__ == "__main__":
    main()
