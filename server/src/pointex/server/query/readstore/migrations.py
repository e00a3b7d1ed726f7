"""Numbered migration files of the read store, rendered for one generation of tables.

Each backend ships ``migrations/NNNN_name.sql``; ``{p}`` in a file stands for the table
prefix of a generation (``g<n>_``). The active generation is migrated at open; a rebuild's
new generation gets every migration. What was applied is recorded per generation in
``g<n>_schema_migrations``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from pointex.server import limits
from pointex.server.store_errors import SchemaTooNew

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
PREFIX_MARK = "{p}"
META_TABLE = "pointex_read_meta"


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file, still holding the prefix mark."""

    version: int
    name: str
    sql: str

    def render(self, generation: int) -> str:
        """Return the SQL for the tables of `generation`."""
        return self.sql.replace(PREFIX_MARK, table_prefix(generation))


def table_prefix(generation: int) -> str:
    """Return the table prefix of a generation: built from an integer, so safe in SQL."""
    assert isinstance(generation, int), generation
    assert generation >= 1, generation
    return f"g{generation}_"


def load_migrations(package: str) -> tuple[Migration, ...]:
    """Read ``<package>/migrations/*.sql`` in version order (numbered 1..n, no hole)."""
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
    known: tuple[Migration, ...], applied_versions: Iterable[int]
) -> tuple[Migration, ...]:
    """Return the known migrations not applied yet, in order.

    Raises:
        SchemaTooNew: The generation has a migration this code does not know.
    """
    applied = set(applied_versions)
    if applied and max(applied) > len(known):
        raise SchemaTooNew(
            f"read-store schema version {max(applied)} is newer than this code knows "
            f"({len(known)}); upgrade Pointex or delete the read store to rebuild it"
        )
    return tuple(migration for migration in known if migration.version not in applied)


# Tables of a generation, in the order a comparison visits them.
PROJECTION_TABLES = ("accounts", "movements", "notifications", "in_flight", "totals")
GENERATION_TABLES = ("checkpoint", *PROJECTION_TABLES, "schema_migrations")

_GENERATION_TABLE = re.compile(r"^g([0-9]{1,9})_checkpoint$")


def generation_of(table_name: str) -> int | None:
    """Return the generation whose checkpoint table this is, or None."""
    match = _GENERATION_TABLE.match(table_name)
    return int(match.group(1)) if match else None
