"""Pointex SDK: typed clients of the command and query servers.

    from pointex.client import PointexClient, Targets

    with PointexClient(Targets("127.0.0.1:50051", "127.0.0.1:50052"), token) as pointex:
        reply = pointex.issue("shop", "alice", 100, "welcome")
        alice = pointex.get_account("alice", consistent=True)

`AsyncPointexClient` has the same methods for asyncio. Errors are `pointex.client.errors`
exceptions; `pointex.client.builders` makes bulk commands; `pointex.client.callbacks` signs
payment callbacks; `pointex.client.reasons` lists every error reason.
"""

from pointex.client.aio import AsyncPointexClient
from pointex.client.bulk import BulkOutcome
from pointex.client.connection import Deadlines, Targets, Tls
from pointex.client.errors import (
    Conflict,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    PointexError,
    Refused,
    Unauthenticated,
    Unavailable,
)
from pointex.client.retry import RetryPolicy
from pointex.client.sync import PointexClient

__all__ = [
    "AsyncPointexClient",
    "BulkOutcome",
    "Conflict",
    "Deadlines",
    "InternalError",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "PointexClient",
    "PointexError",
    "Refused",
    "RetryPolicy",
    "Targets",
    "Tls",
    "Unauthenticated",
    "Unavailable",
]
