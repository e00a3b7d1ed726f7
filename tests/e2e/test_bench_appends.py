"""The event store's append ceiling benchmark runs end to end and leaves nothing behind.

Against the real PostgreSQL; no timing is asserted (SPEC §6 keeps performance out of
tests). What is proved: the batches it appends are whole transfers (three events each) that
commit without a conflict, the log it leaves is gap-free, the report says what was done, and
the schema is dropped afterwards.
"""

from __future__ import annotations

import asyncpg
import pytest

from bench import appends
from pointex.server.eventstore.postgres.store import PostgresEventStore


async def test_appends_are_whole_transfers_in_a_gap_free_log(pg_dsn: str, pg_schema: str) -> None:
    """One batch of 3 transfers (the time is up after it) makes 9 events in order."""
    store = PostgresEventStore(pg_dsn, schema=pg_schema)
    await store.open()
    try:
        measured = await appends.measure(store, accounts=5, transfers_per_batch=3, seconds=1e-9)
        log = await store.read_all(0, 100)
    finally:
        await store.close()
    assert (measured.transfers, measured.events) == (3, 9)
    assert [event.position for event in log] == list(range(1, 10))
    assert [event.type for event in log[:3]] == [
        "PointsDebited",
        "PointsCredited",
        "TransferInitiated",
    ]
    assert "transfers/s:" in appends.report(measured)


@pytest.mark.timeout(60)
async def test_the_command_measures_and_drops_its_schema(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short run appends whole batches and drops its schema; a batch over 333 is refused."""
    measured = await appends.run(pg_dsn, accounts=10, transfers_per_batch=5, seconds=0.2)
    assert measured.transfers > 0
    assert measured.transfers % 5 == 0
    connection = await asyncpg.connect(pg_dsn)
    try:
        left = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pointex_appends_%'"
        )
    finally:
        await connection.close()
    assert left == 0
    with pytest.raises(SystemExit):
        appends.main(["--transfers-per-batch", "334"])
    assert "--transfers-per-batch must be 1 to 333" in capsys.readouterr().err
