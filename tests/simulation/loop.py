"""An asyncio event loop on virtual time: sleeps take no real time, and a seed orders it all.

`VirtualLoop` is a `SelectorEventLoop` whose selector never waits: asked to wait up to
`timeout`, it moves the virtual clock forward by `timeout` (the time to the next timer, as
asyncio computes it) and reports no I/O. `loop.time()` reads that clock, so `asyncio.sleep`,
timeouts, deadlines and retry backoffs all run at once and in one order: callbacks run in
the order they were scheduled, timers in the order of their due times (ties in the order
they were armed). Nothing else decides the order, so one program gives one schedule.

What would break that is refused loudly: a file descriptor registered for real I/O (a
socket, a driver's connection) or work handed to a thread (`run_in_executor`, which
`asyncio.to_thread` uses) raises `NondeterminismError`, and a loop with nothing ready and
no timer (every task waits for something nobody will do) raises `SimulationStuck` instead
of blocking forever.

The loop also names its tasks' creation order (`live_tasks`), so that a simulated crash can
cancel a node's tasks in an order that does not depend on memory addresses (sets of tasks
iterate by id).
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
from collections.abc import Callable, Coroutine, Generator, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Virtual time starts here (seconds), far from zero so that no code mistakes it for unset.
EPOCH_S = 1_000.0


class SimulationStuck(RuntimeError):
    """Nothing is ready and no timer is armed: every task waits forever."""


class NondeterminismError(RuntimeError):
    """Something asked the loop for real I/O, which a deterministic run cannot have."""


class _VirtualSelector(selectors.BaseSelector):
    """A selector with no I/O that advances its loop's clock instead of waiting."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        """Advance the loop's clock with `advance` instead of waiting."""
        self._advance = advance
        self._keys: dict[Any, selectors.SelectorKey] = {}
        self.sealed = False  # Past the loop's own set-up: no more registrations.

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """Accept the loop's own wake-up pipe; refuse any later (real) I/O."""
        if self.sealed:
            raise NondeterminismError(f"real I/O in a deterministic run: {fileobj!r}")
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        """Forget a registration."""
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Advance the virtual clock by `timeout` (the wait to the next timer); no events."""
        if timeout is None:
            raise SimulationStuck("no callback is ready and no timer is armed")
        if timeout > 0:
            self._advance(timeout)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        """Return the registrations."""
        return self._keys

    def close(self) -> None:
        """Forget every registration."""
        self._keys.clear()


class VirtualLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose time is virtual and whose waits take no real time."""

    def __init__(self) -> None:
        """Start at virtual time `EPOCH_S`, with no task."""
        self._now_s = EPOCH_S
        selector = _VirtualSelector(self._advance)
        super().__init__(selector)
        selector.sealed = True
        self._task_number = 0
        self._tasks_alive: dict[int, asyncio.Task[Any]] = {}
        self.set_task_factory(self._new_task)

    def time(self) -> float:
        """Return the virtual time, in seconds."""
        return self._now_s

    def _advance(self, seconds: float) -> None:
        """Move virtual time forward (the selector's wait)."""
        self._now_s += seconds

    def jump(self, seconds: float) -> None:
        """Move virtual time forward at once: timers due by then run next."""
        assert seconds >= 0, seconds
        self._now_s += seconds

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        """Refuse: a thread would run at a real moment, which no seed decides."""
        del executor, args
        raise NondeterminismError(f"a thread in a deterministic run: {func!r}")

    def _new_task(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        """Create a task and keep it, by creation number, until it is done."""
        task = asyncio.Task(coro, loop=loop, context=context)
        number = self._task_number
        self._task_number += 1
        self._tasks_alive[number] = task
        task.add_done_callback(lambda _: self._tasks_alive.pop(number, None))
        return task

    def live_tasks(self) -> list[asyncio.Task[Any]]:
        """Return the tasks not done yet, oldest first."""
        return [task for task in self._tasks_alive.values() if not task.done()]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to its end on a fresh `VirtualLoop`; return its result."""
    with asyncio.Runner(loop_factory=VirtualLoop) as runner:
        return runner.run(main())


def current() -> VirtualLoop:
    """Return the running loop, which must be a `VirtualLoop`."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualLoop), loop
    return loop
