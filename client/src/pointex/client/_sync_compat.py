"""The blocking primitives the sync client waits on (the asyncio client has asyncio's)."""

from __future__ import annotations

from collections.abc import Callable
from queue import Queue
from time import sleep
from typing import cast

import grpc

__all__ = ["Queue", "cancel", "sleep"]


def cancel(call: grpc.RpcContext) -> None:
    """Cancel a call that is still running (nothing happens to a finished one)."""
    # The type stubs leave RpcContext.cancel unannotated; its signature is () -> bool.
    stop = cast("Callable[[], object]", call.cancel)
    stop()
