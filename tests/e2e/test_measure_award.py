"""`scripts/measure_award.py` runs end to end and leaves nothing behind.

No timing is asserted (SPEC §6 keeps performance out of tests). What is proved: a tiny award
goes through the real `pointex points award` on each event store, every row is awarded, the
merchant's balance check passes, the peak RSS is the CLI's (above the spawner's floor), and
the temporary directory, and on PostgreSQL the schema, are gone afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 200
RUN_TIMEOUT_S = 60


async def _measure(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run the script on ROWS rows with its scratch space under tmp_path; return its JSON."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    output = tmp_path / "award.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "measure_award.py"),
        "--rows",
        str(ROWS),
        "--members",
        "20",
        "--output",
        str(output),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    assert process.returncode == 0, stdout.decode()
    assert list(scratch.iterdir()) == [], "the temporary directory must be removed"
    document: dict[str, Any] = json.loads(output.read_text())
    return document


def _check_award(award: dict[str, Any], backend: str) -> None:
    assert award["backend"] == backend
    assert (award["rows"], award["awarded"], award["failed"]) == (ROWS, ROWS, 0)
    assert award["balance_ok"] is True
    assert award["peak_rss_mib"] > award["spawn_floor_mib"] > 0
    assert award["notes"] == []


async def test_a_small_award_on_sqlite_is_measured_and_checked(tmp_path: Path) -> None:
    """200 rows on the SQLite store: all awarded, the balance checked, nothing left behind."""
    document = await _measure(tmp_path, "--backends", "sqlite")
    [award] = document["awards"]
    _check_award(award, "sqlite")


@pytest.mark.postgres
async def test_a_small_award_on_postgres_drops_its_schema(tmp_path: Path, pg_dsn: str) -> None:
    """200 rows on PostgreSQL: all awarded and checked, and the random schema is dropped."""
    document = await _measure(tmp_path, "--backends", "postgres", "--pg-dsn", pg_dsn)
    [award] = document["awards"]
    _check_award(award, "postgres")
    assert award["schema"].startswith("pointex_award_")
    connection = await asyncpg.connect(pg_dsn)
    try:
        left = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", award["schema"]
        )
    finally:
        await connection.close()
    assert left == 0
