"""Operating errors of the stores, shared by the event store and the read stores.

They live outside `eventstore/` so that the query side (which may not import the event
store) and the gRPC edge can name them. Every subclass says whether a retry may help.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the event store's operating errors; the subclass says whether to retry."""


class WrongExpectedVersion(StoreError):
    """A stream's current version is not the version the writer expected; nothing written."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        """Name the stream, the version the writer expected and the version it found."""
        super().__init__(
            f"wrong expected version for stream {stream_id!r}: "
            f"expected {expected_version}, actual {actual_version}"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class StoreUnavailable(StoreError):
    """The store cannot be reached or is busy; retrying later may succeed."""


class CommitOutcomeUnknown(StoreUnavailable):
    """The connection was lost during COMMIT: the events may or may not be committed.

    Callers must answer UNAVAILABLE, never OK; a retry with the same request id finds out.
    """


class FencedOff(StoreError):
    """A slice range's lease changed hands: this writer may no longer append to it.

    Nothing was written. The range's new owner serves its streams; retrying here fails again
    until this writer holds the range's lease once more.
    """


class DurabilityUnsafe(StoreError):
    """The database may lose acknowledged commits and no override was given."""


class SchemaTooNew(StoreError):
    """The database schema is newer than this code knows."""


class SchemaNotMigrated(StoreError):
    """The database lacks migrations, and the connection's role may not apply them."""
