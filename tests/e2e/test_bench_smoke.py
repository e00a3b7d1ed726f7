"""The benchmark harness works end to end: real contender processes, the real runner code.

Tiny sizes and about one measured second per scenario; no timing is asserted (SPEC §6 keeps
performance out of tests). What is proved: the runner starts the contenders on free ports,
sets accounts up, drives them with the load generator and writes the documented JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import write_json
from bench.run import POSTGRES_SETTINGS, Options, run

ROW_KEYS = {
    "contender", "store", "scenario", "concurrency", "ok", "ops_per_s", "p50_ms", "p99_ms",
    "max_ms", "errors", "deadlocks", "aborts",
}  # fmt: skip


@pytest.mark.postgres
@pytest.mark.timeout(60)
async def test_runner_measures_echo_and_lockbased_uniform(pg_dsn: str, tmp_path: Path) -> None:
    """The echo and the lock-based uniform scenario each yield a row with successful calls."""
    options = Options(
        scenarios=("uniform", "echo"),
        contenders=("lockbased-request", "echo"),
        warmup_s=0,
        measure_s=2,
        repeat=1,
        callers=4,
        processes=1,
        # Enough members that request-order row locks rarely deadlock: with 8, four callers
        # could spend the whole window in lock waits (2 s each) and complete nothing.
        members=200,
        pg_dsn=pg_dsn,
        output=tmp_path / "latest.json",
        chart=False,
    )

    document = await run(options)
    write_json(options.output, document)

    written = json.loads(options.output.read_text())
    assert {"machine", "started_at", "duration_s", "rows", "ratios"} <= written.keys()
    assert {"cpu_count", "python", "postgres_version"} <= written["machine"].keys()
    # The settings that move the figures are recorded as the server reports them.
    settings = written["machine"]["postgres_settings"]
    assert settings.keys() == set(POSTGRES_SETTINGS), settings
    assert settings["fsync"] in {"on", "off"}
    assert settings["shared_buffers"][0].isdigit(), settings
    rows = {(row["contender"], row["scenario"]): row for row in written["rows"]}
    assert rows.keys() == {("grpc-echo", "echo"), ("lockbased-request-order", "uniform")}
    for row in rows.values():
        assert row.keys() >= ROW_KEYS
        assert row["status"] == "ok"
        assert row["ok"] > 0
    assert isinstance(rows["lockbased-request-order", "uniform"]["deadlocks"], int)
