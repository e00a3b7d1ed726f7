"""The deterministic simulation of the command side: seeds 0..N-1, each a whole schedule.

Each seed (tests/simulation) runs the command side over an in-memory store on virtual
time: concurrent clients that retry with their request ids, a payment provider that
confirms, fails, repeats, is late or stays silent, clock jumps, store faults before and
after COMMIT, and crashes at any instant, each followed by recovery. Every seed must keep
I1 and I2, give each acknowledged request exactly one effect and the same answer on every
retry, and end every trade. `make test` runs 500 seeds, `make chaos` 10,000;
``POINTEX_SIM_SEED=<n>`` runs seed n alone, exactly as it ran in the batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.chaos.conftest import FULL, Report, scale
from tests.simulation.audit import Violation
from tests.simulation.run import log_of, simulate
from tests.simulation.schedule import Settings
from tests.simulation.world import Outcome

SEEDS = scale(500, 10_000)
SEED_ENV = "POINTEX_SIM_SEED"
ROOT = Path(__file__).resolve().parents[3]
FAILURES_SHOWN_MAX = 5


def _seeds() -> list[int]:
    """Return the seeds to run: POINTEX_SIM_SEED alone, or 0..N-1."""
    chosen = os.environ.get(SEED_ENV)
    return [int(chosen)] if chosen else list(range(SEEDS))


@pytest.mark.timeout(3 * 3600 if FULL else 300)
def test_every_seeded_schedule_keeps_the_invariants(chaos_report: Report) -> None:
    """Seeds 0..N-1 (or POINTEX_SIM_SEED alone): no violation; each failure names its replay."""
    seeds = _seeds()
    totals: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    for seed in seeds:
        try:
            totals.update(simulate(seed).counts)
        except Violation as violation:
            failures.append(str(violation))
    elapsed_s = time.perf_counter() - started
    chaos_report(
        "I1 at every commit; I2 and no negative balance after every recovery; each "
        "acknowledged request once, with one answer; every trade ends; a seed replays exactly",
        f"{len(seeds):,} seed{'s' * (len(seeds) != 1)}, {totals['operations']:,} operations, "
        f"{totals['calls']:,} calls, "
        f"{totals['crashes']:,} crashes, {totals['faults injected']:,} injected faults, "
        f"{totals['trades ended']:,} trades ended; {len(failures)} violations "
        f"({totals['known bugs met']} known bugs met) in {elapsed_s:.0f} s",
    )
    shown = "\n\n".join(failures[:FAILURES_SHOWN_MAX])
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n\n{shown}"
    assert totals["trades ended"] == totals["trades"]


def _eventful_seed() -> Outcome:
    """Return the run of the first seed that crashes, injects faults and ends trades."""
    for seed in range(50):
        outcome = simulate(seed)
        counts = outcome.counts
        if counts["crashes"] and counts["faults injected"] and counts["trades ended"]:
            return outcome
    pytest.fail("none of fifty seeds crashes, injects faults and ends trades")


def test_a_seed_replays_exactly_in_this_process_and_another() -> None:
    """One seed run twice here, and in a process with another hash seed: one log, byte for byte.

    The seed's run crashes, injects faults and settles or cancels trades, so the replay
    covers every source of nondeterminism the simulation controls.
    """
    outcome = _eventful_seed()
    seed = outcome.seed
    first, second = log_of(seed), log_of(seed)
    assert len(first) == outcome.counts["events"]
    assert first == second
    script = f"from tests.simulation.run import simulate; print(simulate({seed}).log_digest)"
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert other.stdout.strip() == outcome.log_digest


def test_the_checks_catch_a_store_that_loses_acknowledged_commits() -> None:
    """A store that acknowledges 2% of its commits and keeps nothing: a seed of ten fails.

    The failure names the seed and its replay command, and happens again on replay.
    """
    broken = Settings(lose=0.02)
    for seed in range(10):
        try:
            simulate(seed, broken)
        except Violation as violation:
            message = str(violation)
            assert f"seed {seed}:" in message
            assert f"{SEED_ENV}={seed} " in message
            with pytest.raises(Violation) as again:
                simulate(seed, broken)
            assert str(again.value) == message
            return
    pytest.fail("ten seeds on a store that loses commits, and no check failed")


def test_runs_that_lose_the_answers_to_commits_stay_clean() -> None:
    """Seeds whose store loses the answers to commits, order steps' included: no violation.

    An order's hold or release sent again after an unknown outcome is applied once, and the
    steps after a lost answer are driven without waiting for a restart
    (tests/simulation/test_found_bugs.py shows each alone).
    """
    lost = 0
    for seed in range(20):
        outcome = simulate(seed)
        lost += outcome.counts["answers lost"]
    assert lost > 0, "no seed lost the answer to a commit: the test shows nothing"
