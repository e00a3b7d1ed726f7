"""Numbered migration files: loading them and deciding which still need applying.

Both the event store and the read stores ship SQL files ``migrations/NNNN_name.sql`` as
package data beside each backend. They are applied in order at open and recorded in a
table of the store; each backend runs them, this module holds the rules.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from pointex.server import limits
from pointex.server.store_errors import SchemaTooNew

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> tuple[Migration, ...]:
    """Read ``<package>/migrations/*.sql`` in version order.

    Args:
        package: The backend's package, e.g. ``pointex.server.eventstore.sqlite``.

    Returns:
        The migrations, numbered 1..n without a hole (asserted: a hole is a packaging bug).
    """
    folder = resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is not None:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    assert 1 <= len(found) <= limits.migrations_max, len(found)
    versions = [migration.version for migration in found]
    assert versions == list(range(1, len(found) + 1)), versions
    return tuple(found)


def pending_migrations(
    known: tuple[Migration, ...], applied_versions: Iterable[int], *, store: str, advice: str
) -> tuple[Migration, ...]:
    """Return the known migrations not applied yet, in order.

    Raises:
        SchemaTooNew: The database has a migration this code does not know; the message
            names `store` and gives `advice`.
    """
    applied = set(applied_versions)
    if applied and max(applied) > len(known):
        raise SchemaTooNew(
            f"{store} schema version {max(applied)} is newer than this code knows "
            f"({len(known)}); {advice}"
        )
    return tuple(migration for migration in known if migration.version not in applied)


def split_sqlite_script(script: str) -> list[str]:
    """Split a SQLite migration script into statements; trigger bodies stay whole.

    ``executescript`` would be simpler but commits any open transaction first, which would
    break the one-transaction migration.
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = [line for line in buffer.splitlines() if line.strip()]
    assert all(line.lstrip().startswith("--") for line in leftover), leftover
    return statements
