"""The benchmark report: the issue's targets judged from rows, the median run, the chart.

Rows are built by hand with round figures, so each verdict can be checked by arithmetic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import markdown_targets, median_row, targets, write_png

Row = dict[str, Any]


def _row(contender: str, store: str, scenario: str, ops_per_s: float, p99_ms: float) -> Row:
    return {
        "contender": contender,
        "store": store,
        "scenario": scenario,
        "status": "ok",
        "ok": int(ops_per_s * 10),
        "ops_per_s": ops_per_s,
        "p50_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "max_ms": p99_ms * 2,
    }


def _run_rows() -> list[Row]:
    return [
        _row("pointex", "postgres", "uniform", 2_000, 60),
        _row("pointex", "postgres", "hot100", 1_900, 60),
        _row("pointex", "postgres", "hot4", 1_900, 60),
        _row("pointex", "postgres", "bulk", 8_000, 700),
        # A deadlock storm: the plain variant completed no transfer at all on hot4.
        _row("lockbased-request-order", "postgres", "uniform", 1_000, 80),
        _row("lockbased-request-order", "postgres", "hot4", 0, 20_000),
        _row("lockbased-sorted-order", "postgres", "hot4", 700, 650),
        _row("grpc-echo", "none", "echo", 5_000, 25),
        _row("eventsourcing", "postgres", "uniform", 300, 300),
        _row("eventsourcing", "postgres", "hot4", 2_000, 500),
        _row("eventsourcing", "postgres", "bulk", 900, 5_000),
    ]


def test_targets_are_judged_from_the_rows() -> None:
    """Each target's ratio is the rows' quotient, met only when it reaches the goal."""
    verdicts = {verdict["target"]: verdict for verdict in targets(_run_rows())}

    assert verdicts["hot4 vs lockbased-sorted"]["value"] == 2.71  # 1,900 / 700
    assert verdicts["hot4 vs lockbased-sorted"]["met"] is False
    assert verdicts["uniform vs lockbased-request"]["value"] == 2.0  # the goal exactly: met
    assert verdicts["uniform vs lockbased-request"]["met"] is True
    assert verdicts["uniform vs grpc-echo unary"]["value"] == 0.4
    assert verdicts["uniform vs grpc-echo unary"]["met"] is False
    assert verdicts["hot4 vs own uniform"]["value"] == 0.95
    assert verdicts["hot4 vs own uniform"]["met"] is True
    assert verdicts["hot4 p99 vs lockbased-sorted"]["value"] == 0.09
    assert verdicts["hot4 p99 vs lockbased-sorted"]["met"] is True
    assert verdicts["bulk transfers per second"]["value"] == 8_000
    assert verdicts["bulk transfers per second"]["met"] is False
    # Behind the peer on hot4 in these rows, and no peer row at all for hot100.
    assert verdicts["hot4 vs eventsourcing peer"]["met"] is False
    assert verdicts["hot100 vs eventsourcing peer"]["value"] is None
    assert verdicts["hot100 vs eventsourcing peer"]["met"] is False


def test_a_contender_that_completed_nothing_is_beaten_by_any_throughput() -> None:
    """A zero denominator makes the ratio unbounded: met, and said so, not left unmeasured."""
    verdicts = {verdict["target"]: verdict for verdict in targets(_run_rows())}

    storm = verdicts["hot4 vs lockbased-request"]
    assert storm["met"] is True
    assert storm["value"] is None
    assert storm["note"] == "the other contender completed none"
    table = markdown_targets({"targets": list(verdicts.values())})
    assert (
        "| hot4 vs lockbased-request | >= 10 | n/a (the other contender completed none) | yes |"
        in (table)
    )


def test_median_row_is_the_middle_run_by_throughput_with_every_run_attached() -> None:
    """Of three runs the one in the middle by throughput is reported; all three are kept."""
    runs = [
        _row("pointex", "postgres", "uniform", 1_900, 60),
        _row("pointex", "postgres", "uniform", 1_700, 90),
        _row("pointex", "postgres", "uniform", 2_100, 50),
    ]

    median = median_row(runs)

    assert median["ops_per_s"] == 1_900
    assert median["p99_ms"] == 60
    assert [run["ops_per_s"] for run in median["runs"]] == [1_900, 1_700, 2_100]


def test_chart_is_a_png_of_every_row_including_a_zero(tmp_path: Path) -> None:
    """The chart renders throughput and p99 side by side, a row at 0 ops/s included."""
    chart = tmp_path / "results" / "latest.png"

    write_png(chart, _run_rows())

    data = chart.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000  # Two panels of bars with their figures, not an empty canvas.
