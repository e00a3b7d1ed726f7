"""The event store's own ceiling: group commits of transfers, with no gRPC and no actors.

`python -m bench.appends` appends batches shaped as the bulk scenario's one-unit transfers
(PointsDebited and PointsCredited on two of `--accounts` account streams, and TransferInitiated
with `completed` set on a new transfer stream: three events, real domain events encoded as
the command server encodes them) through `PostgresEventStore.append_batch`, one batch after
another as the command server's group commit does, for `--seconds`. It prints transfers
and events per second and the share of a core the writer and PostgreSQL used.

This is the bound any transfer path of Pointex on this store and machine stays under: the
bulk scenario adds gRPC, decoding, the actors and the replies on the same event loop.
Run from the repository root; the schema it creates is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from bench.cpu import postgres_cpu_s
from bench.run import PG_DSN_DEFAULT
from pointex.server import limits as server_limits
from pointex.server.domain.events import (
    PointsCredited,
    PointsDebited,
    TransferInitiated,
)
from pointex.server.domain.values import TransferKind
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import StreamAppend
from pointex.server.eventstore.postgres.store import PostgresEventStore

_EVENTS_PER_TRANSFER: Final = 3
# The command server's group commit takes at most this many transfers of three events.
_TRANSFERS_PER_BATCH_MAX: Final = server_limits.append_batch_events_max // _EVENTS_PER_TRANSFER
_ACCOUNTS_DEFAULT: Final = 10_000
_SECONDS_DEFAULT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Measured:
    """What one run of appends came to."""

    transfers: int
    events: int
    seconds: float
    writer_cpu_s: float
    postgres_cpu_s: float | None  # None when PostgreSQL's processes cannot be read here


class _Accounts:
    """Account streams and the version each is at, as the actors would know them."""

    def __init__(self, count: int) -> None:
        self.versions = dict.fromkeys((f"account-{i}" for i in range(count)), 0)
        self.ids = list(self.versions)


def _transfer(accounts: _Accounts, rng: random.Random) -> list[StreamAppend]:
    """Return one transfer's unit: debit, credit and the transfer's two records."""
    source, target = rng.sample(accounts.ids, 2)
    transfer_id = secrets.token_hex(16)
    kind = TransferKind.TRANSFER
    debit = PointsDebited(source, transfer_id, kind, target, 1, "", 999_999)
    credit = PointsCredited(target, transfer_id, kind, source, 1, "", 1_000_001)
    initiated = TransferInitiated(
        transfer_id, kind, source, target, 1, "", transfer_id, 999_999, completed=True
    )
    unit = [
        StreamAppend(source, accounts.versions[source], (codec.encode(debit),)),
        StreamAppend(target, accounts.versions[target], (codec.encode(credit),)),
        StreamAppend(
            f"transfer-{transfer_id}",
            0,
            (codec.encode(initiated),),
        ),
    ]
    accounts.versions[source] += 1
    accounts.versions[target] += 1
    return unit


async def measure(
    store: PostgresEventStore, accounts: int, transfers_per_batch: int, seconds: float
) -> Measured:
    """Append transfer batches one after another for `seconds` (at least one batch)."""
    rng = random.Random(secrets.randbits(32))
    known = _Accounts(accounts)
    transfers = 0
    pg_before, cpu_before, started = postgres_cpu_s(), time.process_time(), time.monotonic()
    elapsed = 0.0
    while elapsed < seconds:  # At least one batch.
        units = [_transfer(known, rng) for _ in range(transfers_per_batch)]
        results = await store.append_batch(units)
        assert all(isinstance(result, list) for result in results), "no conflicts expected"
        transfers += len(units)
        elapsed = time.monotonic() - started
    pg_after = postgres_cpu_s()
    return Measured(
        transfers=transfers,
        events=transfers * _EVENTS_PER_TRANSFER,
        seconds=elapsed,
        writer_cpu_s=time.process_time() - cpu_before,
        postgres_cpu_s=None if pg_before is None or pg_after is None else pg_after - pg_before,
    )


def report(measured: Measured) -> str:
    """Return the one-paragraph summary the command prints."""
    per_s = measured.transfers / measured.seconds
    events_per_s = measured.events / measured.seconds
    writer_share = measured.writer_cpu_s / measured.seconds
    writer_us = measured.writer_cpu_s / measured.transfers * 1e6
    lines = [
        f"transfers/s: {per_s:,.0f} ({events_per_s:,.0f} events/s) over {measured.seconds:.1f} s",
        f"writer CPU: {writer_share:.0%} of a core, {writer_us:.0f} us a transfer",
    ]
    if measured.postgres_cpu_s is not None:
        lines.append(
            f"PostgreSQL CPU: {measured.postgres_cpu_s / measured.seconds:.0%} of a core, "
            f"{measured.postgres_cpu_s / measured.transfers * 1e6:.0f} us a transfer"
        )
    return "\n".join(lines)


async def run(dsn: str, accounts: int, transfers_per_batch: int, seconds: float) -> Measured:
    """Measure on a fresh schema of `dsn`, then drop it."""
    schema = f"pointex_appends_{secrets.token_hex(4)}"
    store = PostgresEventStore(dsn, schema=schema)
    await store.open()
    try:
        return await measure(store, accounts, transfers_per_batch, seconds)
    finally:
        await store.close()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # Hex only.
        finally:
            await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, measure, print."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.appends", description=__doc__.split("\n\n", 1)[0]
    )
    parser.add_argument("--pg-dsn", default=os.environ.get("POINTEX_TEST_PG_DSN", PG_DSN_DEFAULT))
    parser.add_argument("--accounts", type=int, default=_ACCOUNTS_DEFAULT)
    parser.add_argument(
        "--transfers-per-batch",
        type=int,
        default=_TRANSFERS_PER_BATCH_MAX,
        help=f"transfers in one group commit (at most {_TRANSFERS_PER_BATCH_MAX}, the default)",
    )
    parser.add_argument("--seconds", type=float, default=_SECONDS_DEFAULT)
    options = parser.parse_args(argv)
    if not 1 <= options.transfers_per_batch <= _TRANSFERS_PER_BATCH_MAX:
        parser.error(f"--transfers-per-batch must be 1 to {_TRANSFERS_PER_BATCH_MAX}")
    if options.accounts < 2 or options.seconds <= 0:
        parser.error("--accounts must be at least 2 and --seconds above 0")
    measured = asyncio.run(
        run(options.pg_dsn, options.accounts, options.transfers_per_batch, options.seconds)
    )
    sys.stdout.write(report(measured) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
