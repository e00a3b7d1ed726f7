"""The market scenario of the benchmark runs end to end, with the real sandbox provider.

Tiny sizes and one measured second; no timing is asserted (SPEC §6 keeps performance out of
tests). What is proved: the runner starts each contender on a fresh store next to a real
sandbox provider process, the callers' orders cross and create trades, the sandbox pays
(or fails) them by signed callbacks, and the end-of-run check finds trades settled and every
point conserved.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import Options, run


@pytest.mark.postgres
@pytest.mark.timeout(60)
async def test_market_settles_trades_and_conserves_points(pg_dsn: str, tmp_path: Path) -> None:
    """Pointex and the lock-based contender each place orders and settle trades, conserving."""
    options = Options(
        scenarios=("market",),
        contenders=("pointex-postgres", "lockbased-request"),
        warmup_s=0,
        measure_s=2,  # A window that outlasts a lock-based deadlock's wait (about 2 s).
        repeat=1,
        callers=4,
        processes=1,
        members=8,
        pg_dsn=pg_dsn,
        output=tmp_path / "latest.json",
        chart=False,
    )

    document = await run(options)

    rows = {row["contender"]: row for row in document["rows"]}
    assert rows.keys() == {"pointex", "lockbased-request-order"}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["scenario"] == "market"
        assert row["ok"] > 0, row
        check = row["check"]
        assert check["ok"], check
        assert check["trades_settled"] >= 1, check
        assert check["points_after"] == check["points_before"]
        assert check["trades_pending"] == 0
    assert isinstance(rows["lockbased-request-order"]["deadlocks"], int)
    assert "market" in document["ratios"]["pointex/postgres vs lockbased-request-order/postgres"]
