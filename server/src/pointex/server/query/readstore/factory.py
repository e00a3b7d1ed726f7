"""Choose and configure a read-store backend from a URL (the same forms as the event store).

* ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``: a SQLite file.
* ``postgresql://user@host:port/db?schema=name`` (or ``postgres://``): PostgreSQL; the
  optional ``schema`` (default ``public``) selects, and creates, the schema holding the
  tables. Give the read store a schema of its own: it drops tables of old generations.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pointex.server.query.readstore.port import ReadStore
from pointex.server.query.readstore.postgres import PostgresReadStore
from pointex.server.query.readstore.sqlite import SqliteReadStore

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def open_read_store(url: str) -> ReadStore:
    """Return the store a URL names, configured but not yet opened: await its `open()`.

    Raises:
        ValueError: The URL names no supported backend, or an in-memory SQLite database.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SqliteReadStore(sqlite_path(url))
    if scheme in _POSTGRES_SCHEMES:
        dsn, schema = postgres_dsn_and_schema(url)
        return PostgresReadStore(dsn, schema=schema)
    raise ValueError(f"unsupported read store URL scheme {scheme!r}: use sqlite or postgresql")


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:///`` URL."""
    if not url.startswith(_SQLITE_PREFIX):
        raise ValueError(f"a SQLite URL starts with {_SQLITE_PREFIX!r}: {url!r}")
    path = url.removeprefix(_SQLITE_PREFIX)
    if "?" in path or "#" in path:
        raise ValueError(f"a SQLite URL takes no parameters: {url!r}")
    if path in {"", ":memory:"} or path.startswith("file:"):
        raise ValueError(f"the read store needs a SQLite file, not {path!r}")
    return path


def postgres_dsn_and_schema(url: str) -> tuple[str, str]:
    """Split a PostgreSQL URL into the driver's DSN and the ``schema`` parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1:
        raise ValueError(f"the schema parameter is given more than once: {url!r}")
    rest = [(key, value) for key, value in query if key != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), schemas[0] if schemas else "public"
