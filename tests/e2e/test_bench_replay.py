"""The projection replay scenario of the benchmark runs end to end on a small log.

Real processes (a Pointex command server on SQLite, then a query server following it) and
the real runner code; no timing is asserted (SPEC §6 keeps performance out of tests). What
is proved: the runner tops a short log up, a fresh query server catches up with it, and the
rebuild replays every event of the log and reports a rate; a contender without projections
gets an `n/a` row, not a zero.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

from bench.run import PG_DSN_DEFAULT, Options, run

# Small enough that the top-up is one bulk message and the replay takes well under a second.
EVENTS_MIN: Final = 500


@pytest.mark.timeout(30)
async def test_replay_rebuilds_every_event_of_the_log(tmp_path: Path) -> None:
    """The rebuild replays exactly the log's events, at a positive rate."""
    options = Options(
        scenarios=("replay",),
        contenders=("pointex-sqlite", "echo"),
        warmup_s=0,
        measure_s=1,
        repeat=1,
        callers=4,
        processes=1,
        members=8,
        # Only the machine description reads PostgreSQL; the SQLite contender needs none.
        pg_dsn=os.environ.get("POINTEX_TEST_PG_DSN", PG_DSN_DEFAULT),
        output=tmp_path / "latest.json",
        chart=False,
        replay_events_min=EVENTS_MIN,
    )

    document = await run(options)

    rows = {(row["contender"], row["scenario"]): row for row in document["rows"]}
    assert rows.keys() == {("pointex", "replay"), ("grpc-echo", "replay")}
    replay = rows["pointex", "replay"]
    assert replay["status"] == "ok", replay
    assert replay["read_store"] == "sqlite"
    assert replay["log_events"] >= EVENTS_MIN
    assert replay["topped_up_events"] > 0, "8 members' setup leaves a log shorter than 500"
    assert replay["events_replayed"] == replay["log_events"]
    assert replay["events_at_start"] == replay["log_events"]
    assert replay["events_per_s"] > 0
    assert replay["catch_up_s"] > 0
    assert rows["grpc-echo", "replay"]["status"] == "n/a"
    assert "replay" not in document["duration_s"]
