"""Translate asyncpg's exceptions into the event store's errors, in one table.

Nothing raised by asyncpg (or by the socket under it) leaves the PostgreSQL adapter: every
call into the driver runs inside `translated`, and `translate` decides the error type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from pointex.server.eventstore.planning import VersionRaceError
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    FencedOff,
    StoreError,
    StoreUnavailable,
)

# The insert guard's refusal of an event whose slice range's lease changed hands (0003).
FENCED_OFF_SQLSTATE = "PX001"

# The first row whose exception type matches wins, so specific rows come before general ones.
TRANSLATION: tuple[tuple[type[BaseException], type[StoreError]], ...] = (
    # Another writer gave a stream version or a position first: nothing was written; the
    # store retries under the position lock, which sees the winner's rows.
    (asyncpg.UniqueViolationError, VersionRaceError),
    # SQLSTATE class 08, including a connection that no longer exists.
    (asyncpg.PostgresConnectionError, StoreUnavailable),
    # Class 57: admin shutdown (pg_terminate_backend), crash, starting up, statement timeout.
    (asyncpg.OperatorInterventionError, StoreUnavailable),
    # Class 53: too many connections, disk full, out of memory.
    (asyncpg.InsufficientResourcesError, StoreUnavailable),
    # Class 40: serialization failure or deadlock; the transaction rolled back, retry.
    (asyncpg.TransactionRollbackError, StoreUnavailable),
    # 25006: connected to a read-only standby, e.g. just after a failover.
    (asyncpg.ReadOnlySQLTransactionError, StoreUnavailable),
    # The client side: connection closed, pool closing, protocol broken.
    (asyncpg.InterfaceError, StoreUnavailable),
    # Refused, reset or timed out sockets (TimeoutError is an OSError).
    (OSError, StoreUnavailable),
    # Anything else the server reports (a trigger refusing a write, a broken schema) is a
    # store error that retrying will not fix.
    (asyncpg.PostgresError, StoreError),
    (asyncpg.InternalClientError, StoreError),
)

DRIVER_ERRORS: tuple[type[BaseException], ...] = tuple(row[0] for row in TRANSLATION)


def translate(error: BaseException, *, during_commit: bool = False) -> StoreError:
    """Return the store error for a driver exception.

    Args:
        error: An exception of one of `DRIVER_ERRORS`.
        during_commit: The exception ended a COMMIT. If the store became unreachable then,
            the commit may or may not have happened: `CommitOutcomeUnknown`.
    """
    if getattr(error, "sqlstate", None) == FENCED_OFF_SQLSTATE:
        return FencedOff(f"PostgreSQL: {error!r}")  # Refused: nothing was written.
    for driver_error, store_error in TRANSLATION:
        if isinstance(error, driver_error):
            if during_commit and issubclass(store_error, StoreUnavailable):
                return CommitOutcomeUnknown(f"connection lost during COMMIT: {error!r}")
            return store_error(f"PostgreSQL: {error!r}")
    # Unreachable: callers pass only DRIVER_ERRORS, and the table ends with their bases.
    raise AssertionError(error) from error


@contextlib.contextmanager
def translated(*, during_commit: bool = False) -> Iterator[None]:
    """Run a block, raising the store's errors in place of the driver's."""
    try:
        yield
    except DRIVER_ERRORS as error:
        raise translate(error, during_commit=during_commit) from error
