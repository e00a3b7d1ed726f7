"""Schema work of the SQLite read store: WAL, meta rows, generations and their migrations."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import aiosqlite

from pointex.server import limits
from pointex.server.query.readstore.migrations import (
    GENERATION_TABLES,
    pending_read_migrations,
    render,
)
from pointex.server.query.readstore.sqlite import sql
from pointex.server.query.readstore.sqlite.errors import translated
from pointex.server.store_errors import StoreError, StoreUnavailable
from pointex.server.store_migrations import load_migrations, split_sqlite_script

_log = logging.getLogger(__name__)
_MIGRATIONS = load_migrations("pointex.server.query.readstore.sqlite")


async def migrate(writer: aiosqlite.Connection, generation: int, *, create: bool) -> None:
    """Apply the pending migrations of one generation (inside the caller's transaction)."""
    await writer.execute(sql.render(sql.CREATE_MIGRATIONS, generation))
    applied = (
        []
        if create
        else await writer.execute_fetchall(sql.render(sql.SELECT_MIGRATIONS, generation))
    )
    for migration in pending_read_migrations(_MIGRATIONS, [row[0] for row in applied]):
        for statement in split_sqlite_script(render(migration, generation)):
            await writer.execute(statement)
        await writer.execute(
            sql.render(sql.INSERT_MIGRATION, generation), (migration.version, _now_us())
        )
        _log.info("applied read-store migration %s to generation %d", migration.name, generation)


async def drop(writer: aiosqlite.Connection, generation: int) -> None:
    """Drop every table of a generation (inside the caller's transaction)."""
    for table in GENERATION_TABLES:
        await writer.execute(sql.render(sql.DROP_TABLE.replace("{table}", table), generation))


async def meta(writer: aiosqlite.Connection, key: str) -> str | None:
    """Return a value of the meta table, or None."""
    found = list(await writer.execute_fetchall(sql.GET_META, (key,)))
    return str(found[0][0]) if found else None


def probe_file(path: str) -> None:
    """Open and close the database file once, raising sqlite3's error if it cannot."""
    sqlite3.connect(path).close()


async def switch_to_wal(writer: aiosqlite.Connection) -> None:
    """Set journal_mode=WAL, retrying while a concurrent opener holds the file's lock."""
    for _ in range(limits.sqlite_wal_switch_attempts_max):
        try:
            async with writer.execute("PRAGMA journal_mode = WAL") as cursor:
                row = await cursor.fetchone()
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                with translated():
                    raise
            await asyncio.sleep(limits.sqlite_wal_switch_pause_ms / 1000)
            continue
        if row is None or str(row[0]).lower() != "wal":
            raise StoreError(f"SQLite refused journal_mode=WAL for the read store: {row!r}")
        return
    raise StoreUnavailable("SQLite read store: could not switch to WAL (file busy)")


def _now_us() -> int:
    return time.time_ns() // 1000
