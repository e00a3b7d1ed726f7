"""Run one seed: `simulate` for its figures (or its violation), `log_of` for its whole log.

A violation's message names the seed and the command that replays it; the run is the same
every time (tests/simulation/loop.py), so the replay meets the same violation.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator

from tests.simulation import loop as virtual
from tests.simulation.audit import Violation
from tests.simulation.known_bugs import known_assertion
from tests.simulation.schedule import Settings
from tests.simulation.world import Outcome, World

# What the command side logs when a detached step failed and the next start will finish it
# (ProcessRunner.detach).
LEFT_TO_RESTART = "a process step will be retried at restart"
REPLAY = "POINTEX_SIM_SEED={seed} .venv/bin/pytest -q tests/e2e/chaos/test_simulation.py"


class _LogWatch(logging.Handler):
    """Watch the command side's log: an ERROR is a bug; a step left to the next start is counted.

    The assertions of known bugs (tests/simulation/known_bugs.py) are counted, not reported.
    A detached process step that failed is logged as left to the next start (the recovery
    scan finishes it): only then may the end of a run need a restart to finish.
    """

    def __init__(self, counts: Counter[str]) -> None:
        """Count what is counted in `counts` (the run's figures)."""
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self._counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        """Count or keep one record."""
        if record.levelno < logging.ERROR:
            if str(record.msg).startswith(LEFT_TO_RESTART):
                self._counts["steps left to restart"] += 1
        elif record.exc_info and known_assertion(record.exc_info[1]) is not None:
            self._counts["known bugs met"] += 1
        else:
            self.errors.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _log_watched(counts: Counter[str]) -> Iterator[_LogWatch]:
    """Watch the block's logs; keep the command side's warnings out of the test's output.

    A run logs warnings by the hundred (every retry, every failed commit).
    """
    watch = _LogWatch(counts)
    pointex, asyncio_log = logging.getLogger("pointex"), logging.getLogger("asyncio")
    saved = pointex.propagate, pointex.level
    pointex.propagate = False
    pointex.setLevel(logging.WARNING)
    pointex.addHandler(watch)
    asyncio_log.addHandler(watch)
    try:
        yield watch
    finally:
        asyncio_log.removeHandler(watch)
        pointex.removeHandler(watch)
        pointex.propagate, pointex.level = saved


def _replayable(seed: int, failure: Exception) -> Violation:
    """Return the violation that reports `failure` with the seed that replays it."""
    # Whatever stopped the run (a check, a bug of the command side or of the simulation
    # itself) is reported so.
    what = failure if isinstance(failure, Violation) else repr(failure)
    return Violation(f"seed {seed}: {what}\nreplay: {REPLAY.format(seed=seed)}")


def simulate(seed: int, settings: Settings | None = None) -> Outcome:
    """Run seed `seed` on a fresh virtual loop; raise Violation (with the replay command)."""
    world = World(seed, settings or Settings())
    with _log_watched(world.counts) as watch:
        try:
            outcome = virtual.run(world.run)
        except Exception as failure:
            raise _replayable(seed, failure) from failure
    if watch.errors:
        raise _replayable(seed, Violation(f"an error was logged: {watch.errors[0]}"))
    return outcome


def log_of(seed: int, settings: Settings | None = None) -> list[tuple[object, ...]]:
    """Return the whole event log a run of `seed` writes, violation or not (to compare runs)."""
    world = World(seed, settings or Settings())
    with _log_watched(world.counts), contextlib.suppress(Exception):
        virtual.run(world.run)
    return [tuple(event) for event in world.database.events]
