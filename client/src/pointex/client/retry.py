"""When to retry a failed call, and how long to wait: one policy for every call the SDK makes.

Retrying a command is safe because every command carries a request id that the server keeps
with its result: a retry with the same id of a command that was applied returns the original
reply and changes nothing; a retry of one that was not applied runs it now. So a call that
ends without a clear answer (UNAVAILABLE, DEADLINE_EXCEEDED, or the library's own INTERNAL or
UNKNOWN when a connection is cut mid-call), one that lost a race (ABORTED)
and one the server asked to come back later (RESOURCE_EXHAUSTED with a RetryInfo delay) are
tried again with the same id, within a bounded number of attempts and a total deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from pointex.client.errors import Conflict, InternalError, Overloaded, PointexError, Unavailable

_DOUBLINGS_MAX = 16  # Past this the delay is capped anyway; keeps the shift small.


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with jittered exponential backoff and a total deadline.

    Attributes:
        attempts_max: attempts in all, the first included (1 = never retry).
        backoff_ms_min: the wait before the first retry, doubled for each later one.
        backoff_ms_max: the longest wait between two attempts.
        server_delay_ms_max: a server's RetryInfo delay is honoured up to this.
        total_ms_max: no retry starts once this long has passed since the first attempt.
    """

    attempts_max: int = 6
    backoff_ms_min: int = 100
    backoff_ms_max: int = 3_200
    server_delay_ms_max: int = 10_000
    total_ms_max: int = 30_000

    def __post_init__(self) -> None:
        """Refuse a policy that could not work."""
        if self.attempts_max < 1:
            raise ValueError("attempts_max must be at least 1")
        if not 0 < self.backoff_ms_min <= self.backoff_ms_max:
            raise ValueError("backoff_ms_min must be positive and at most backoff_ms_max")

    def delay_ms(self, error: PointexError, attempt: int, elapsed_ms: int) -> int | None:
        """Return how long to wait before trying again after failed attempt `attempt` (1-based).

        None means give up: the error is not retryable, the attempts are used up, or the wait
        would end past the total deadline.
        """
        if not retryable(error) or attempt >= self.attempts_max:
            return None
        delay_ms: int = min(
            self.backoff_ms_max, self.backoff_ms_min << min(attempt - 1, _DOUBLINGS_MAX)
        )
        # Jitter spreads the retries of many clients that failed together (a server restart),
        # so they do not all come back in the same instant.
        delay_ms = delay_ms // 2 + random.randint(0, delay_ms // 2)  # noqa: S311 - not a secret.
        if error.retry_delay_ms is not None:
            delay_ms = max(delay_ms, min(error.retry_delay_ms, self.server_delay_ms_max))
        if elapsed_ms + delay_ms > self.total_ms_max:
            return None
        return delay_ms


def retryable(error: PointexError) -> bool:
    """Return whether trying again with the same request id may succeed."""
    if isinstance(error, Unavailable):
        # CANCELLED is the caller's own doing (or the process going away): never retried.
        return error.code != grpc.StatusCode.CANCELLED
    if isinstance(error, Conflict):
        return error.code == grpc.StatusCode.ABORTED
    if isinstance(error, InternalError):
        # A Pointex server's INTERNAL always carries ErrorInfo (INTERNAL_ERROR, a bug, not
        # retried). Without it, INTERNAL or UNKNOWN comes from the library, typically a
        # connection cut in the middle of a call: an unclear outcome like UNAVAILABLE.
        return not error.reason
    if isinstance(error, Overloaded):
        # Without RetryInfo, RESOURCE_EXHAUSTED comes from the library (a message over the
        # size limit): the same request would fail the same way.
        return error.retry_delay_ms is not None
    return False
