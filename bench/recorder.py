"""What one load-generator process records: outcomes in the measured window, latencies in µs.

The window is [warm-up end, warm-up end + measured seconds]. A call that completes inside it
counts towards throughput (ok) or errors. Its latency is kept, and so is the latency of every
call still in flight when the window closes: the generator awaits those for `drain_s_max`,
then cancels the rest and keeps the time they had waited (a lower bound) and their number
(`unfinished`), so a stall at the very end is not hidden from p99 and max.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from bench import limits

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass
class Recorded:
    """One process's outcome for one scenario; merged by the runner."""

    ok: int = 0
    latencies_us: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_dropped: int = 0
    unfinished: int = 0
    # Scenario-specific tallies of calls completed in the window (the market's trades
    # created and cancels), kept apart from `ok`, which is what throughput counts.
    counts: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Recorded) -> None:
        """Add `other`'s counts and samples to this one."""
        self.ok += other.ok
        self.latencies_us.extend(other.latencies_us)
        self.errors.update(other.errors)
        self.latencies_dropped += other.latencies_dropped
        self.unfinished += other.unfinished
        self.counts.update(other.counts)


class Recorder:
    """Classify completed calls against the measured window."""

    def __init__(self, window_start_s: float, window_end_s: float) -> None:
        """Measure between two `time.monotonic()` instants."""
        self.window_start_s = window_start_s
        self.window_end_s = window_end_s
        self.recorded = Recorded()

    def record(
        self, started_s: float, latency_us: int, ok: int, errors: Counter[str] | None = None
    ) -> None:
        """Record one call (or one bulk message) that started at `started_s` and just ended."""
        finished_s = time.monotonic()
        if finished_s < self.window_start_s or started_s >= self.window_end_s:
            return  # Warm-up, or started after the window closed.
        if finished_s <= self.window_end_s:
            self.recorded.ok += ok
            if errors:
                self.recorded.errors.update(errors)
        self._keep(latency_us)

    def count(
        self, started_s: float, tallies: Counter[str], errors: Counter[str] | None = None
    ) -> None:
        """Add the tallies (and errors) of a call that started at `started_s` and just ended.

        Only a call that ended inside the window counts, as for `record`; no latency is kept.
        """
        finished_s = time.monotonic()
        if started_s < self.window_end_s and self.window_start_s <= finished_s <= self.window_end_s:
            self.recorded.counts.update(tallies)
            if errors:
                self.recorded.errors.update(errors)

    def record_unfinished(self, started_s: float, waited_us: int) -> None:
        """Record a call cancelled after the drain: it waited `waited_us` and had not ended."""
        if started_s < self.window_end_s:
            self.recorded.unfinished += 1
            self._keep(waited_us)

    def _keep(self, latency_us: int) -> None:
        if len(self.recorded.latencies_us) < limits.latency_samples_max:
            self.recorded.latencies_us.append(latency_us)
        else:
            self.recorded.latencies_dropped += 1


def error_key(error: grpc.aio.AioRpcError) -> str:
    """Return `CODE/REASON` for a failed call (`CODE` alone when it carries no ErrorInfo)."""
    reason = ""
    # grpc.aio returns an aio.Metadata, which iterates as (key, value) pairs; the stubs type
    # the sync form.
    trailing = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in trailing:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = info.reason
    code = error.code().name
    return f"{code}/{reason}" if reason else code


def bulk_error_key(code: int, reason: str) -> str:
    """Return `CODE/REASON` for a per-command BulkError (numeric google.rpc.Code)."""
    name = next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    return f"{name}/{reason}" if reason else name


def percentile_us(sorted_us: list[int], per_mille: int) -> int:
    """Return the nearest-rank percentile (in per mille: 500 = p50, 990 = p99) of sorted µs."""
    if not sorted_us:
        return 0
    rank = max(1, -(-per_mille * len(sorted_us) // 1000))  # ceil without floats
    return sorted_us[rank - 1]
