"""What an account's program windows count: points per operation, by hour and by year (UTC).

An account keeps, per limited operation, the points counted in each of the last 25 hours
and in the current calendar year; older entries are dropped as events arrive, so the state
stays small however long the account lives. A rolling day is the hour of `now` and the 24
before it: whole hours, so a window counts up to an hour more than 24 hours back, never
less, and a cap is never passed.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Final

from pointex.server.domain.program import LimitedOperation

HOUR_MS: Final = 3_600_000
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY_HOURS: Final = 24


def year_of(at_ms: int) -> int:
    """Return the calendar year (UTC) of a moment in milliseconds since the epoch."""
    return (_EPOCH + dt.timedelta(milliseconds=at_ms)).year


@dataclass(frozen=True, slots=True)
class Usage:
    """Points counted toward an account's windows: by (operation, hour) and (operation, year)."""

    hours: tuple[tuple[LimitedOperation, int, int], ...] = ()
    years: tuple[tuple[LimitedOperation, int, int], ...] = ()

    def add(self, operation: LimitedOperation, at_ms: int, points: int) -> Usage:
        """Return the usage with `points` of `operation` counted at `at_ms`."""
        hour = at_ms // HOUR_MS
        year = _year_of_hour(hour)
        return Usage(
            _added(self.hours, operation, hour, points, keep_from=hour - DAY_HOURS),
            _added(self.years, operation, year, points, keep_from=year),
        )

    def in_day(self, operation: LimitedOperation, now_ms: int) -> int:
        """Return the points of `operation` counted in the rolling day that ends at `now_ms`."""
        since = now_ms // HOUR_MS - DAY_HOURS
        return sum(p for op, hour, p in self.hours if op is operation and hour >= since)

    def in_year(self, operation: LimitedOperation, now_ms: int) -> int:
        """Return the points of `operation` counted in the calendar year of `now_ms`."""
        year = _year_of_hour(now_ms // HOUR_MS)
        return sum(p for op, y, p in self.years if op is operation and y == year)


NO_USAGE: Final = Usage()


@functools.lru_cache(maxsize=64)
def _year_of_hour(hour: int) -> int:
    """Return the calendar year (UTC) of an hour since the epoch (recent hours are cached)."""
    return year_of(hour * HOUR_MS)


def _added(
    entries: tuple[tuple[LimitedOperation, int, int], ...],
    operation: LimitedOperation,
    period: int,
    points: int,
    *,
    keep_from: int,
) -> tuple[tuple[LimitedOperation, int, int], ...]:
    """Return `entries` without those before `keep_from`, with `points` added at `period`."""
    # The usual case, a busy account: the latest entry is this one's and none is too old.
    if entries and entries[-1][:2] == (operation, period) and entries[0][1] >= keep_from:
        return (*entries[:-1], (operation, period, entries[-1][2] + points))
    kept = [entry for entry in entries if entry[1] >= keep_from]
    for i, (op, at, counted) in enumerate(kept):
        if op is operation and at == period:
            kept[i] = (op, at, counted + points)
            return tuple(kept)
    kept.append((operation, period, points))
    return tuple(kept)
