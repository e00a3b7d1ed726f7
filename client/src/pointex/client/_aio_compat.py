"""The asyncio primitives the asyncio client waits on (the sync client has threading's)."""

from __future__ import annotations

from asyncio import Queue, sleep

import grpc.aio

__all__ = ["Queue", "cancel", "sleep"]


def cancel(call: grpc.aio.Call) -> None:
    """Cancel a call that is still running (nothing happens to a finished one)."""
    call.cancel()
