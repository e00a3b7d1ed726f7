"""The process runner: one backoff, one task set, one bounded stop."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from pointex.server import limits
from pointex.server.command.app.runner import ProcessRunner, backoff_delays_ms, retry_until_done
from pointex.server.eventstore.port import StoreUnavailable


def test_the_backoff_starts_at_its_minimum_and_doubles_up_to_its_maximum() -> None:
    """Pauses go min, 2·min, 4·min … and stay at the maximum once they reach it."""
    delays = list(itertools.islice(backoff_delays_ms(), 12))
    assert delays[0] == limits.process_retry_delay_ms_min
    assert delays[1] == 2 * limits.process_retry_delay_ms_min
    assert delays[-1] == limits.process_retry_delay_ms_max
    assert delays == sorted(delays)


async def test_a_step_is_retried_on_an_operating_error_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two store failures, then success: three attempts, the step's value returned."""
    monkeypatch.setattr(limits, "process_retry_delay_ms_min", 1)
    attempts = 0

    async def step() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise StoreUnavailable("down")
        return "done"

    done = await retry_until_done(step, retry_on=(StoreUnavailable,), what="t", pause_first=False)
    assert (done, attempts) == ("done", 3)


async def test_an_error_not_retried_ends_the_retries() -> None:
    """A refusal is not an operating error: it propagates after one attempt."""

    async def step() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await retry_until_done(step, retry_on=(StoreUnavailable,), what="t", pause_first=False)


async def test_a_key_is_in_progress_while_its_work_runs() -> None:
    """A request key is marked while its task runs and released when it ends."""
    runner = ProcessRunner()
    release = asyncio.Event()
    task = runner.spawn(release.wait(), key="k1")
    assert runner.in_progress("k1")
    assert runner.busy
    release.set()
    await task
    assert not runner.in_progress("k1")
    assert not runner.busy


async def test_stop_waits_within_its_bound_then_cancels_what_is_stuck() -> None:
    """A finished step is awaited, a stuck one is cancelled once the bound passes."""
    runner = ProcessRunner()
    quick = runner.spawn(asyncio.sleep(0.01, result="quick"))
    stuck = runner.spawn(asyncio.Event().wait())
    await runner.stop(timeout_ms=100)
    assert quick.result() == "quick"
    assert stuck.cancelled()
    assert not runner.busy


async def test_a_detached_step_that_fails_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nobody awaits a detached step: its operating error becomes a warning."""
    runner = ProcessRunner()

    async def fails() -> None:
        raise StoreUnavailable("down")

    runner.detach(fails())
    await runner.stop()
    assert "will be retried at restart" in caplog.text


async def test_stop_waits_for_a_step_that_a_finishing_step_started() -> None:
    """A step that ends by starting the next one: stop waits for both, within its bound."""
    runner = ProcessRunner()
    finished: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.02)
        finished.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        runner.spawn(second())
        finished.append("first")

    runner.spawn(first())
    await runner.stop(timeout_ms=2_000)
    assert finished == ["first", "second"]
    assert not runner.busy
