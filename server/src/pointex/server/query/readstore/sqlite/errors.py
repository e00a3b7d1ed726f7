"""Translate sqlite3's exceptions into the read store's errors, in one table.

aiosqlite raises sqlite3's own exceptions; their extended result code says whether a retry
may help ("database is locked") or not ("no such table").
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from pointex.server.store_errors import StoreError, StoreUnavailable

# Primary result codes (the low byte) of conditions that a later retry may not meet.
UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,  # another connection holds the lock past busy_timeout
        sqlite3.SQLITE_LOCKED,  # a conflicting lock within this process
        sqlite3.SQLITE_IOERR,  # the disk failed a read, write or sync
        sqlite3.SQLITE_FULL,  # the disk is full
        sqlite3.SQLITE_CANTOPEN,  # the file or its directory is not reachable
        sqlite3.SQLITE_NOMEM,  # out of memory
        sqlite3.SQLITE_PROTOCOL,  # a WAL lock protocol race
        sqlite3.SQLITE_READONLY,  # the file or file system became read-only
        sqlite3.SQLITE_INTERRUPT,  # the statement was interrupted
    }
)

DRIVER_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error,)


def translate(error: BaseException) -> StoreError:
    """Return the store error for a sqlite3 exception."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in UNAVAILABLE_CODES:
        return StoreUnavailable(f"SQLite read store: {error!r}")
    # Corruption, a broken schema, a constraint: a retry will not fix these.
    return StoreError(f"SQLite read store: {error!r}")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Run a block, raising the store's errors in place of the driver's."""
    try:
        yield
    except DRIVER_ERRORS as error:
        raise translate(error) from error
