"""Translate sqlite3's exceptions into the event store's errors, in one table.

aiosqlite raises sqlite3's own exceptions. They carry SQLite's extended result code, which
says more than the exception class: "database is locked" and "no such table" are both
``OperationalError``, but only the first is worth a retry.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from pointex.server.eventstore.planning import VersionRaceError
from pointex.server.eventstore.port import CommitOutcomeUnknown, StoreError, StoreUnavailable

# Extended result codes: another writer gave a stream version or a position first.
RACE_CODES = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})

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


def translate(error: BaseException, *, during_commit: bool = False) -> StoreError:
    """Return the store error for a sqlite3 exception.

    Args:
        error: A ``sqlite3.Error``.
        during_commit: The exception ended a COMMIT. A failed WAL sync may still leave the
            commit durable, so an unavailable store then means `CommitOutcomeUnknown`.
    """
    code = getattr(error, "sqlite_errorcode", None)
    if code in RACE_CODES:
        return VersionRaceError(f"SQLite: {error!r}")
    if code is not None and code & 0xFF in UNAVAILABLE_CODES:
        if during_commit:
            return CommitOutcomeUnknown(f"SQLite COMMIT failed: {error!r}")
        return StoreUnavailable(f"SQLite: {error!r}")
    # Corruption, a trigger refusing a write, a broken schema: a retry will not fix these.
    return StoreError(f"SQLite: {error!r}")


@contextlib.contextmanager
def translated(*, during_commit: bool = False) -> Iterator[None]:
    """Run a block, raising the store's errors in place of the driver's."""
    try:
        yield
    except DRIVER_ERRORS as error:
        raise translate(error, during_commit=during_commit) from error
