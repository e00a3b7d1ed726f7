"""The event loop every contender's server runs on: the same one Pointex uses.

Pointex's servers run on uvloop unless POINTEX_EVENT_LOOP says `asyncio`. The other
contenders (lock-based servers, the eventsourcing peer, the grpc.aio echo) read the same
variable, so that a ratio never compares two loops.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to its end on the loop POINTEX_EVENT_LOOP names (uvloop by default)."""
    factory = (
        None
        if os.environ.get("POINTEX_EVENT_LOOP", "uvloop") == "asyncio"
        else uvloop.new_event_loop
    )
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
