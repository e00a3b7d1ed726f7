"""The cluster scenario works end to end: three servers, then two that split or balance the ranges.

Tiny sizes and one measured second per workload; no timing is asserted (SPEC §6 keeps
performance out of tests). What is proved: the scenario starts the servers on one schema,
the first holds the ranges and the others forward, the load generator reaches all three,
and each row carries the CPU of every server process and of PostgreSQL; split or balanced, both
servers serve without errors.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest

from bench.cluster import BALANCED, SCENARIO, SPLIT, run_cluster
from bench.contenders import Plan
from bench.run import Options, _env, drop_schemas


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_three_servers_serve_uniform_and_bulk_and_report_their_cpu(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Each workload through three processes completes calls, and every process used CPU."""
    token = secrets.token_hex(24)
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"operator bench-operator {token}\n")
    plan = Plan(pg_dsn, tmp_path, tokens_file)
    options = Options(
        scenarios=(SCENARIO,),
        contenders=("pointex-postgres",),
        warmup_s=0,
        measure_s=1,
        repeat=1,
        callers=6,
        processes=1,
        members=200,
        pg_dsn=pg_dsn,
        output=tmp_path / "latest.json",
        chart=False,
    )
    # Split, a bulk message takes its credits across the two servers: the first replies come
    # after a second or two with these 24 messages of 500 in flight, so the window is longer.
    split = dataclasses.replace(options, warmup_s=1, measure_s=4)
    try:
        rows = await run_cluster(options, plan, token, _env(), layouts=(("0-63",) * 3,))
        rows += await run_cluster(split, plan, token, _env(), layouts=(SPLIT, BALANCED))
    finally:
        await drop_schemas(pg_dsn, plan.schemas)
    assert [(row["workload"], row["processes"], row["layout"]) for row in rows] == [
        ("uniform", 3, "whole"),
        ("bulk", 3, "whole"),
        ("uniform", 2, "split"),
        ("bulk", 2, "split"),
        ("uniform", 2, "balanced"),
        ("bulk", 2, "balanced"),
    ]
    for row in rows[2:]:  # Split or balanced: both servers decide commands.
        assert row["status"] == "ok", row
        assert not row["errors"], row
        assert all(share > 0 for share in row["server_cpu_pct"]), row
    for row in rows[:2]:
        assert row["status"] == "ok", row
        assert row["ok"] > 0, row
        assert not row["errors"], row
        # The holder decides every command; the standbys relay a share of the calls. Relaying
        # bulk messages as bytes costs a standby under 1% of a core: over one second, both may
        # stay under the clock's 10 ms tick, so only unary relaying is asserted.
        holder, *standbys = row["server_cpu_pct"]
        assert len(standbys) == 2, row
        assert holder > 0, row
        if row["workload"] == "uniform":
            assert sum(standbys) > 0, row
        assert row["postgres_cpu_pct"] > 0, row
