"""Choose and configure an event-store backend from a URL.

* ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` (as SQLAlchemy spells
  them): a SQLite file. ``:memory:`` is refused: the store must be durable.
* ``postgresql://user@host:port/db?schema=name`` (or ``postgres://``): PostgreSQL; the
  optional ``schema`` selects (and creates) the schema holding the tables, default
  ``public``. Other query parameters go to the driver unchanged.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pointex.server.eventstore.port import EventStore
from pointex.server.eventstore.postgres import PostgresEventStore
from pointex.server.eventstore.sqlite import SqliteEventStore

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def open_store(url: str, *, allow_unsafe_durability: bool = False) -> EventStore:
    """Return the store a URL names, configured but not yet opened: await its `open()`.

    Args:
        url: ``sqlite:///...`` or ``postgresql://...`` (see the module docstring).
        allow_unsafe_durability: Open even when the database could lose acknowledged
            commits, logging a warning (tests and benchmarks only).

    Raises:
        ValueError: The URL names no supported backend, or an in-memory SQLite database.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SqliteEventStore(sqlite_path(url), allow_unsafe_durability=allow_unsafe_durability)
    if scheme in _POSTGRES_SCHEMES:
        dsn, schema = postgres_dsn_and_schema(url)
        return PostgresEventStore(
            dsn, schema=schema, allow_unsafe_durability=allow_unsafe_durability
        )
    raise ValueError(f"unsupported event store URL scheme {scheme!r}: use sqlite or postgresql")


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:///`` URL.

    Raises:
        ValueError: No path, an in-memory database, or query parameters (none are known).
    """
    if not url.startswith(_SQLITE_PREFIX):
        raise ValueError(f"a SQLite URL starts with {_SQLITE_PREFIX!r}: {url!r}")
    path = url.removeprefix(_SQLITE_PREFIX)
    if "?" in path or "#" in path:
        raise ValueError(f"a SQLite URL takes no parameters: {url!r}")
    if path in {"", ":memory:"} or path.startswith("file:"):
        raise ValueError(f"the event store needs a durable SQLite file, not {path!r}")
    return path


def postgres_dsn_and_schema(url: str) -> tuple[str, str]:
    """Split a PostgreSQL URL into the driver's DSN and the ``schema`` parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1:
        raise ValueError(f"the schema parameter is given more than once: {url!r}")
    rest = [(key, value) for key, value in query if key != "schema"]
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    return dsn, schemas[0] if schemas else "public"
