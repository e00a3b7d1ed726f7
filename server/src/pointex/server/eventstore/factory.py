"""Choose and configure an event-store backend from a URL.

* ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` (as SQLAlchemy spells
  them): a SQLite file. ``:memory:`` is refused: the store must be durable.
* ``postgresql://user@host:port/db?schema=name`` (or ``postgres://``): PostgreSQL; the
  optional ``schema`` selects (and creates) the schema holding the tables, default
  ``public``. Other query parameters go to the driver unchanged.
"""

from __future__ import annotations

from pointex.server.eventstore.port import EventStore
from pointex.server.eventstore.postgres import PostgresEventStore
from pointex.server.eventstore.sqlite import SqliteEventStore
from pointex.server.store_urls import (
    POSTGRES_SCHEMES,
    postgres_dsn_and_schema,
    sqlite_path,
    url_scheme,
)


def open_store(
    url: str, *, allow_unsafe_durability: bool = False, stalled_transaction_ms: int | None = None
) -> EventStore:
    """Return the store a URL names, configured but not yet opened: await its `open()`.

    Args:
        url: ``sqlite:///...`` or ``postgresql://...`` (see the module docstring).
        allow_unsafe_durability: Open even when the database could lose acknowledged
            commits, logging a warning (tests and benchmarks only).
        stalled_transaction_ms: On PostgreSQL, how long a transaction of this process may
            wait for it before the database ends it (PostgresEventStore).

    Raises:
        ValueError: The URL names no supported backend, or an in-memory SQLite database.
    """
    scheme = url_scheme(url)
    if scheme == "sqlite":
        return SqliteEventStore(
            sqlite_path(url, "event store"), allow_unsafe_durability=allow_unsafe_durability
        )
    if scheme in POSTGRES_SCHEMES:
        dsn, schema = postgres_dsn_and_schema(url)
        return PostgresEventStore(
            dsn,
            schema=schema,
            allow_unsafe_durability=allow_unsafe_durability,
            stalled_transaction_ms=stalled_transaction_ms,
        )
    raise ValueError(f"unsupported event store URL scheme {scheme!r}: use sqlite or postgresql")
