"""Measure the command server's CPU for one batch insert: columns as lists or as literals.

The PostgreSQL adapter sends a batch's rows as one array per column. asyncpg encodes a
Python list as an array by checking every element against abstract base classes; an array
literal in a text parameter costs one string. This inserts the same 800 events (200
four-event transfers) with the adapter's statement both ways, inside transactions rolled
back, alternating, and prints the client process's CPU time per transfer (the server's
work is in PostgreSQL's process and is not counted).

Usage: .venv/bin/python scripts/measure_append_columns.py [--dsn DSN] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any

import asyncpg

from pointex.server.eventstore.postgres import sql
from pointex.server.pg_arrays import int_array, text_array

EVENTS = 800
EVENTS_PER_TRANSFER = 4
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    """Parse the options and run the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DSN, help="a PostgreSQL to use (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=200, help="inserts per way, alternating")
    args = parser.parse_args()
    asyncio.run(_measure(args.dsn, args.rounds))


async def _measure(dsn: str, rounds: int) -> None:
    connection = await asyncpg.connect(dsn)
    schema = f"pointex_measure_{secrets.token_hex(4)}"
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        await connection.execute(f"SET search_path = {schema}")
        await connection.execute(
            "CREATE TABLE events (position bigint PRIMARY KEY, stream_id text, "
            "stream_version bigint, slice integer, category text, type text, "
            "schema_version integer, data bytea, metadata bytea, recorded_at_us bigint)"
        )
        as_literals = await connection.prepare(sql.INSERT_EVENTS)
        # The same statement taking plain arrays, as the adapter sent them before.
        as_lists = await connection.prepare(sql.INSERT_EVENTS.replace("::text::", "::"))
        spent = {"lists": 0.0, "literals": 0.0}
        for _ in range(rounds):
            for way, statement in (("lists", as_lists), ("literals", as_literals)):
                transaction = connection.transaction()
                await transaction.start()
                started = time.process_time()
                await statement.fetch(*_columns(literals=way == "literals"), 0)
                spent[way] += time.process_time() - started
                await transaction.rollback()
        transfers = rounds * EVENTS / EVENTS_PER_TRANSFER
        for way, seconds in spent.items():
            print(f"{way}: {seconds / transfers * 1e6:.2f} µs of client CPU per transfer")
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()


def _columns(*, literals: bool) -> tuple[Any, ...]:
    """Return the batch's columns as the adapter builds them (`appender._columns`)."""
    stream_ids = [f"account-m{i % 400}" for i in range(EVENTS)]
    versions = list(range(1, EVENTS + 1))
    slices = [i % 1024 for i in range(EVENTS)]
    types = ["PointsDebited"] * EVENTS
    schema_versions = [1] * EVENTS
    data = [b"x" * 60] * EVENTS
    metadata = [b""] * EVENTS
    if not literals:
        return (1, stream_ids, versions, slices, types, schema_versions, data, metadata)
    return (
        1,
        text_array(stream_ids),
        int_array(versions),
        int_array(slices),
        text_array(types),
        int_array(schema_versions),
        data,
        metadata,
    )


if __name__ == "__main__":
    main()
