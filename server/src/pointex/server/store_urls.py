"""Store URLs, shared by the event store and the read stores.

* ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``: a SQLite file.
* ``postgresql://user@host:port/db?schema=name`` (or ``postgres://``): PostgreSQL; the
  optional ``schema`` parameter (default ``public``) selects, and creates, the schema.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SQLITE_PREFIX: Final = "sqlite:///"
POSTGRES_SCHEMES: Final = frozenset({"postgresql", "postgres"})


def url_scheme(url: str) -> str:
    """Return the scheme of a store URL, lower case."""
    return urlsplit(url).scheme.lower()


def sqlite_path(url: str, store: str) -> str:
    """Return the file path of a ``sqlite:///`` URL; `store` names the store in errors.

    Raises:
        ValueError: No path, an in-memory database, or query parameters (none are known).
    """
    if not url.startswith(SQLITE_PREFIX):
        raise ValueError(f"a SQLite URL starts with {SQLITE_PREFIX!r}: {url!r}")
    path = url.removeprefix(SQLITE_PREFIX)
    if "?" in path or "#" in path:
        raise ValueError(f"a SQLite URL takes no parameters: {url!r}")
    if path in {"", ":memory:"} or path.startswith("file:"):
        raise ValueError(f"the {store} needs a durable SQLite file, not {path!r}")
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
