"""Define the event-store port: records, errors and the `EventStore` protocol.

Every backend (``postgres/``, ``sqlite/``) implements `EventStore` and passes one contract
suite (``tests/contract``). Callers depend on this module only, never on a backend.

Failures come in the three kinds of STYLE habit 11. A malformed append (empty, oversized, a
stream id without a category) is a programmer error and fails an assertion. An operating
error raises a `StoreError` subclass; driver exceptions never leave an adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from pointex.server import limits
from pointex.server.slices import SLICE_RANGES, SLICES, stream_entity_id, stream_slice
from pointex.server.store_errors import (
    CommitOutcomeUnknown,
    DurabilityUnsafe,
    FencedOff,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
    WrongExpectedVersion,
)

__all__ = [
    "SLICES",
    "SLICE_RANGES",
    "BeforeCommit",
    "CommitOutcomeUnknown",
    "DurabilityUnsafe",
    "EventStore",
    "FencedOff",
    "NewEvent",
    "RecordedEvent",
    "SchemaTooNew",
    "Snapshot",
    "StoreError",
    "StoreUnavailable",
    "StreamAppend",
    "WrongExpectedVersion",
    "is_valid_stream_id",
    "stream_category",
    "stream_entity_id",
    "stream_slice",
]


# The three records below are built for every event of every append: named tuples, which
# construct about four times faster than frozen dataclasses (measured: 0.28 against 1.15 µs
# for nine fields), and are just as immutable.


class NewEvent(NamedTuple):
    """An event a writer appends: a stable type name, its schema version and opaque bytes."""

    type: str
    schema_version: int
    data: bytes
    metadata: bytes = b""


class StreamAppend(NamedTuple):
    """Events for one stream, with the version of the stream's last event the writer saw.

    ``expected_version`` 0 means the stream must not exist yet.
    """

    stream_id: str
    expected_version: int
    events: tuple[NewEvent, ...]


class RecordedEvent(NamedTuple):
    """A committed event, as every reader sees it.

    Attributes:
        position: Global position: 1-based, gap-free, in commit order.
        stream_id: The stream, ``category-id``.
        stream_version: 1-based version within the stream.
        slice: ``stream_slice(stream_id)``, stored with the event.
        type: Stable type name, never a Python path.
        schema_version: Version of the payload's schema, 1 or more.
        data: The serialized payload, opaque to the store.
        metadata: Opaque metadata (request id, causation).
        recorded_at_us: Wall clock of the store's server when appended, in microseconds
            since the Unix epoch.
    """

    position: int
    stream_id: str
    stream_version: int
    slice: int
    type: str
    schema_version: int
    data: bytes
    metadata: bytes
    recorded_at_us: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of one stream as of ``stream_version``, serialized by its owner."""

    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: bytes


# Called inside the appending transaction after its rows are written and before COMMIT.
# Only tests set it, to hold a transaction open or to make it fail at that instant.
BeforeCommit = Callable[[Sequence[RecordedEvent]], Awaitable[None]]


def by_stream(events: Iterable[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    """Return `events` grouped by stream, each stream's in the order given."""
    found: dict[str, list[RecordedEvent]] = {}
    for event in events:
        found.setdefault(event.stream_id, []).append(event)
    return found


def stream_category(stream_id: str) -> str:
    """Return the category of a stream: the text before the first ``-``."""
    category, _, _ = stream_id.partition("-")
    return category


def is_valid_stream_id(stream_id: str) -> bool:
    """Tell whether a stream id is ``category-id`` with both parts present and within bounds."""
    category, dash, entity_id = stream_id.partition("-")
    size_bytes = len(stream_id.encode())
    return (
        bool(category)
        and dash == "-"
        and bool(entity_id)
        and (size_bytes <= limits.stream_id_bytes_max)
    )


class EventStore(Protocol):
    """An append-only log of events in streams, with a gap-free global order."""

    async def open(self) -> None:
        """Connect, check durability settings and apply pending migrations."""

    async def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""

    async def schema_version(self) -> int:
        """Return the highest migration applied to the database."""
        ...

    async def append(self, appends: Sequence[StreamAppend]) -> list[RecordedEvent]:
        """Append to one or more streams in one atomic transaction.

        Raises:
            WrongExpectedVersion: A stream's version differs from its expected version;
                nothing was written to any stream.
        """
        ...

    async def append_batch(
        self, units: Sequence[Sequence[StreamAppend]]
    ) -> list[list[RecordedEvent] | WrongExpectedVersion]:
        """Commit many independent units in one transaction (group commit).

        Each unit is all-or-nothing. A unit whose expected versions do not hold is left out
        and its conflict is returned in its slot; the others commit. Units are applied in
        input order, so a later unit sees the versions an earlier one wrote.
        """
        ...

    async def read_stream(
        self, stream_id: str, from_version: int = 1, limit: int = limits.read_batch_events_max
    ) -> list[RecordedEvent]:
        """Return up to ``limit`` events of a stream from ``from_version``, in version order."""
        ...

    async def read_stream_starts(
        self, stream_ids: Sequence[str], count: int
    ) -> dict[str, list[RecordedEvent]]:
        """Return the first ``count`` events of each stream, in version order, in one read.

        A stream that does not exist has no entry. At most `read_starts_streams_max` streams.
        """
        ...

    async def stream_version(self, stream_id: str) -> int:
        """Return the version of a stream's last event, 0 if the stream does not exist."""
        ...

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Return the version of each stream in one read, 0 for a stream that does not exist."""
        ...

    async def read_all(self, after_position: int, limit: int) -> list[RecordedEvent]:
        """Return up to ``limit`` events with a position above ``after_position``, ascending."""
        ...

    async def head_position(self) -> int:
        """Return the highest committed position, 0 if the log is empty."""
        ...

    def subscribe(self, after_position: int) -> AsyncIterator[RecordedEvent]:
        """Yield every event after ``after_position``: catch-up, then live, each exactly once.

        Memory is bounded by one page of `limits.subscribe_buffer_events_max` events. No
        connection is held between pages, so a consumer may simply stop iterating (or be
        cancelled). A store error ends the iteration; resubscribe from the last position.
        """
        ...

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the snapshot unless the stored one is newer (one snapshot per stream)."""

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """Return the stream's snapshot, or None."""
        ...

    async def delete_snapshots(self, stream_id: str | None = None) -> None:
        """Delete one stream's snapshot, or all when ``stream_id`` is None.

        Snapshots are caches of what the events say, so deleting them loses nothing.
        """
