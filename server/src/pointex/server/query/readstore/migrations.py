"""Numbered migration files of the read store, rendered for one generation of tables.

Each backend ships ``migrations/NNNN_name.sql``; ``{p}`` in a file stands for the table
prefix of a generation (``g<n>_``). The active generation is migrated at open; a rebuild's
new generation gets every migration. What was applied is recorded per generation in
``g<n>_schema_migrations``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pointex.server.store_migrations import Migration, pending_migrations

PREFIX_MARK = "{p}"
META_TABLE = "pointex_read_meta"


def render(migration: Migration, generation: int) -> str:
    """Return a migration's SQL for the tables of `generation` (``{p}`` -> its prefix)."""
    return migration.sql.replace(PREFIX_MARK, table_prefix(generation))


def table_prefix(generation: int) -> str:
    """Return the table prefix of a generation: built from an integer, so safe in SQL."""
    assert isinstance(generation, int), generation
    assert generation >= 1, generation
    return f"g{generation}_"


def pending_read_migrations(
    known: tuple[Migration, ...], applied_versions: Iterable[int]
) -> tuple[Migration, ...]:
    """Return the migrations a generation still needs."""
    return pending_migrations(
        known,
        applied_versions,
        store="read-store",
        advice="upgrade Pointex or delete the read store to rebuild it",
    )


# Tables of a generation, in the order a comparison visits them.
PROJECTION_TABLES = (
    "accounts",
    "movements",
    "notifications",
    "in_flight",
    "totals",
    "markets",
    "orders",
    "trades",
    "price_levels",
    "escrow",
    "program_rules",
    "pending_issues",
)
GENERATION_TABLES = ("checkpoint", *PROJECTION_TABLES, "schema_migrations")

_GENERATION_TABLE = re.compile(r"^g([0-9]{1,9})_checkpoint$")


def generation_of(table_name: str) -> int | None:
    """Return the generation whose checkpoint table this is, or None."""
    match = _GENERATION_TABLE.match(table_name)
    return int(match.group(1)) if match else None
