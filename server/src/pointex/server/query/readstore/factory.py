"""Choose and configure a read-store backend from a URL (the same forms as the event store).

* ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``: a SQLite file.
* ``postgresql://user@host:port/db?schema=name`` (or ``postgres://``): PostgreSQL; the
  optional ``schema`` (default ``public``) selects, and creates, the schema holding the
  tables. Give the read store a schema of its own: it drops tables of old generations.
"""

from __future__ import annotations

from pointex.server.query.readstore.port import ReadStore
from pointex.server.query.readstore.postgres import PostgresReadStore
from pointex.server.query.readstore.sqlite import SqliteReadStore
from pointex.server.store_urls import (
    POSTGRES_SCHEMES,
    postgres_dsn_and_schema,
    sqlite_path,
    url_scheme,
)


def open_read_store(url: str) -> ReadStore:
    """Return the store a URL names, configured but not yet opened: await its `open()`.

    Raises:
        ValueError: The URL names no supported backend, or an in-memory SQLite database.
    """
    scheme = url_scheme(url)
    if scheme == "sqlite":
        return SqliteReadStore(sqlite_path(url, "read store"))
    if scheme in POSTGRES_SCHEMES:
        dsn, schema = postgres_dsn_and_schema(url)
        return PostgresReadStore(dsn, schema=schema)
    raise ValueError(f"unsupported read store URL scheme {scheme!r}: use sqlite or postgresql")
