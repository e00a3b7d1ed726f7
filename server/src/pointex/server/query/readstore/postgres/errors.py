"""Translate asyncpg's exceptions into the read store's errors, in one table.

Nothing raised by asyncpg (or by the socket under it) leaves the PostgreSQL adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from pointex.server.store_errors import StoreError, StoreUnavailable

# The first row whose exception type matches wins, so specific rows come before general ones.
TRANSLATION: tuple[tuple[type[BaseException], type[StoreError]], ...] = (
    # SQLSTATE class 08, including a connection that no longer exists.
    (asyncpg.PostgresConnectionError, StoreUnavailable),
    # Class 57: admin shutdown, crash, starting up, statement timeout.
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
    # Anything else the server reports (a broken schema, a constraint) will not heal by retry.
    (asyncpg.PostgresError, StoreError),
    (asyncpg.InternalClientError, StoreError),
)

DRIVER_ERRORS: tuple[type[BaseException], ...] = tuple(row[0] for row in TRANSLATION)


def translate(error: BaseException) -> StoreError:
    """Return the store error for a driver exception of one of `DRIVER_ERRORS`."""
    for driver_error, store_error in TRANSLATION:
        if isinstance(error, driver_error):
            return store_error(f"PostgreSQL read store: {error!r}")
    # Unreachable: callers pass only DRIVER_ERRORS, and the table ends with their bases.
    raise AssertionError(error) from error


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Run a block, raising the store's errors in place of the driver's."""
    try:
        yield
    except DRIVER_ERRORS as error:
        raise translate(error) from error
