"""Bounded retries with backoff, safe because every mutating command carries its request id.

The command server keeps each request id with its command's result in the event store. A
retry with the same id of a command that was applied returns the original reply (the same
position, the same ids) and changes nothing; a retry of one that was not applied runs it
now. So when a call ends without a clear answer (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED)
or the server asks to come back later (RESOURCE_EXHAUSTED), trying again with the same id
can never apply a command twice. Reads change nothing and are always safe to repeat.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final, TypeVar

import grpc

from pointex.cli.errors import CallFailure, describe

RETRYABLE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
backoff_ms_min: Final = 200
# Doubling stops here so that the default retries finish within a few seconds.
backoff_ms_max: Final = 3_200
# A server's RetryInfo is honoured up to this; a longer wait is better left to the person.
server_delay_ms_max: Final = 10_000
_MS_PER_S: Final = 1000
_DOUBLINGS_MAX: Final = 8  # Past this the delay is capped anyway; keeps the shift small.

T = TypeVar("T")


class CallFailed(Exception):
    """A call failed for good: refused, or still failing after the last retry.

    Attributes:
        failure: what the last attempt's status said.
        request_id: the request id of a mutating command, to run it again with; empty for reads.
    """

    def __init__(self, failure: CallFailure, request_id: str = "") -> None:
        """Record the failure and the request id it happened under."""
        super().__init__(failure.line())
        self.failure = failure
        self.request_id = request_id

    @property
    def outcome_unknown(self) -> bool:
        """Return whether a mutating command may or may not have been applied."""
        return bool(self.request_id) and self.failure.code in RETRYABLE_CODES


def backoff_s(attempt: int, server_delay_ms: int | None) -> float:
    """Return how long to wait before retry number `attempt` (0-based), with jitter.

    Jitter spreads the retries of many clients that failed together (a server restart), so
    they do not all come back in the same instant.
    """
    delay_ms: int = min(backoff_ms_max, backoff_ms_min << min(attempt, _DOUBLINGS_MAX))
    if server_delay_ms is not None:
        delay_ms = max(delay_ms, min(server_delay_ms, server_delay_ms_max))
    jitter_ms = secrets.randbelow(delay_ms // 4 + 1)
    return (delay_ms + jitter_ms) / _MS_PER_S


def with_retries(
    attempt: Callable[[], T],
    *,
    retries: int,
    request_id: str = "",
    on_retry: Callable[[CallFailure, float], None] | None = None,
) -> T:
    """Return `attempt()`, calling it again after a retryable failure, at most `retries` times.

    Raises:
        CallFailed: the call was refused, or failed retryably `retries + 1` times.
    """
    assert retries >= 0, retries
    for number in range(retries + 1):
        try:
            return attempt()
        except grpc.RpcError as error:
            failure = describe(error)
            if failure.code not in RETRYABLE_CODES or number == retries:
                raise CallFailed(failure, request_id) from None
            delay_s = backoff_s(number, failure.retry_delay_ms)
            if on_retry is not None:
                on_retry(failure, delay_s)
            time.sleep(delay_s)
    raise AssertionError("the loop returns or raises")  # pragma: no cover
