"""The one runner of the command side's process work: one task set, one backoff, one stop.

A process step that must happen once its first step committed (credit a debited transfer,
place a held order, settle a confirmed trade) runs detached from the caller that started
it: a client that hangs up must not leave points in flight. Every such task lives in one
`ProcessRunner`, which shutdown waits for once, within one bound; a step it cancels stays
open in the log and the recovery scan at next start finishes it.

A step that failed for an operating reason (store down, overload, a race) is retried with
the one backoff of the codebase, `retry_until_done`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from pointex.server import limits
from pointex.server.domain import errors
from pointex.server.eventstore.port import StoreError
from pointex.server.overload import Overloaded

log = logging.getLogger(__name__)

T = TypeVar("T")
_MS_PER_S = 1000


# Where the conflict pauses' jitter comes from: a generator of its own rather than the
# process-wide one, so that a deterministic simulation (tests/simulation) can seed it.
jitter = random.Random()  # noqa: S311 - jitter, not a secret.


async def pause_after_conflict(attempt: int) -> None:
    """Wait a random moment before deciding again after conflict number `attempt` (from 0)."""
    ceiling_ms = min(limits.conflict_pause_ms_min * 2**attempt, limits.conflict_pause_ms_max)
    await asyncio.sleep(jitter.uniform(0, ceiling_ms) / _MS_PER_S)


def backoff_delays_ms() -> collections.abc.Iterator[int]:
    """Yield the pauses between attempts: from the minimum, doubling up to the maximum."""
    delay_ms = limits.process_retry_delay_ms_min
    while True:
        yield delay_ms
        delay_ms = min(delay_ms * 2, limits.process_retry_delay_ms_max)


async def retry_until_done(
    step: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    what: str,
    pause_first: bool = True,
) -> T:
    """Run `step` until it succeeds, pausing before each retry after a failure in `retry_on`.

    With `pause_first`, the first attempt also waits one pause (the failure that called for
    the retry has just happened). Any other exception ends the retries and propagates.
    """
    delays = backoff_delays_ms()
    if pause_first:
        await asyncio.sleep(next(delays) / _MS_PER_S)
    while True:
        try:
            return await step()
        except retry_on as error:
            log.warning("%s still pending: %s", what, error)
        await asyncio.sleep(next(delays) / _MS_PER_S)


class ProcessRunner:
    """Every task the command side runs detached from its callers, and their shutdown."""

    def __init__(self) -> None:
        """Start with no task."""
        self._tasks: set[asyncio.Task[Any]] = set()
        # Request keys with work under way (a first attempt, its retry): a concurrent retry
        # of the same request is refused instead of running twice.
        self._keys: collections.Counter[str] = collections.Counter()

    def spawn(self, work: Coroutine[Any, Any, T], *, key: str = "") -> asyncio.Task[T]:
        """Run `work` in a task of its own, referenced (and `key` in progress) until it ends."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        if key:
            self._keys[key] += 1

        def done(finished: asyncio.Task[T]) -> None:
            self._tasks.discard(finished)
            if key:
                self._keys[key] -= 1
                if not self._keys[key]:
                    del self._keys[key]

        task.add_done_callback(done)
        return task

    def detach(
        self,
        work: Awaitable[object],
        *,
        key: str = "",
        expected: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Run a step nobody waits for; log its failure (recovery retries it at next start).

        Operating errors, and the `expected` ones, are logged as warnings; anything else is a
        bug, logged with its traceback.
        """
        warned: tuple[type[BaseException], ...] = (
            StoreError,
            Overloaded,
            errors.DomainError,
            *expected,
        )

        async def guarded() -> None:
            try:
                await work
            except warned as error:
                log.warning("a process step will be retried at restart: %s", error)
            except Exception:  # A bug: logged with its traceback; recovery retries the step.
                log.exception("a process step failed")

        self.spawn(guarded(), key=key)

    def in_progress(self, key: str) -> bool:
        """Tell whether work for a request key runs right now."""
        return key in self._keys

    @property
    def running(self) -> int:
        """Return how many detached steps run right now (for metrics)."""
        return len(self._tasks)

    @property
    def busy(self) -> bool:
        """Tell whether any detached work runs right now."""
        return bool(self._tasks)

    def abort(self) -> None:
        """Cancel everything at once, finishing nothing: what a crash does (tests use it)."""
        for task in self._tasks:
            task.cancel()

    async def stop(self, timeout_ms: int = limits.shutdown_processes_ms_max) -> None:
        """Let the work under way finish within `timeout_ms`; cancel the rest and wait for it.

        A step that ends by starting the next (a reconciliation that finds a transfer to
        finish) is waited for too, within the same bound. A step cancelled here stays open in
        the log; recovery finishes it at next start.
        """
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + timeout_ms / _MS_PER_S
        while self._tasks and (left_s := deadline_s - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left_s)
        stuck = set(self._tasks)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)


async def sleep_until_due(added: asyncio.Event, wait_ms: int | None) -> None:
    """Wait `wait_ms` (a timer's next entry; None: none), or until `added` is set.

    Clears `added` first. Never waits longer than the timers' bound, so a clock that jumps
    is noticed soon (the activation and expiry timers share it).
    """
    added.clear()
    bound_ms = limits.activation_timer_wait_ms_max
    timeout_s = min(wait_ms if wait_ms is not None else bound_ms, bound_ms) / 1000
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(added.wait(), timeout_s)
