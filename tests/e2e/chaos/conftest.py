"""The fault suite's scale and its summary table.

`make test` runs every fault test short; `make chaos` sets POINTEX_CHAOS=full and runs them
long. Each test reports its pass criterion and a figure through `chaos_report`; the table
of all of them is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.e2e.chaos.own_postgres import own_postgres

__all__ = ["own_postgres", "scale"]

FULL = os.environ.get("POINTEX_CHAOS", "").lower() == "full"


def scale(short: int, full: int) -> int:
    """Return the short or the full figure, as the run asks."""
    return full if FULL else short


@dataclass(frozen=True)
class Row:
    """One fault test's line in the summary."""

    test: str
    criterion: str
    figure: str


_ROWS: list[Row] = []
Report = Callable[[str, str], None]


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest) -> Report:
    """Return a function that records this test's criterion and figure for the summary."""

    def report(criterion: str, figure: str) -> None:
        _ROWS.append(Row(request.node.name, criterion, figure))
        print(f"[chaos] {request.node.name}: {figure}")  # noqa: T201 - the figure is the output.

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fault suite's table: every test that reported, its criterion and figure."""
    if not _ROWS:
        return
    terminalreporter.section(f"fault suite ({'full' if FULL else 'short'})")
    for row in _ROWS:
        terminalreporter.write_line(f"{row.test}\n    pass: {row.criterion}\n    {row.figure}")
