"""Load shedding: the one error a bounded queue raises when it is full."""

from __future__ import annotations


class Overloaded(Exception):
    """A bounded queue is full; the caller should retry after `retry_after_ms`.

    It becomes RESOURCE_EXHAUSTED with the reason (MAILBOX_FULL or OVERLOADED) and a
    RetryInfo delay. Nothing was changed.
    """

    def __init__(self, reason: str, message: str, retry_after_ms: int) -> None:
        """Record why the work was shed and when a retry makes sense."""
        assert reason.isupper(), reason
        assert retry_after_ms > 0, retry_after_ms
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_ms = retry_after_ms
