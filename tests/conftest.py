"""Share the fixture ladder: PostgreSQL, then a per-test schema or SQLite file, then stores.

The event-store fixtures are the only backend-specific test code (STYLE habit 4): every
contract test asks for `store`, `make_store`, `raw_sql`, `truncate_sql` or `store_url` and
runs unchanged on both backends.

* `pg_dsn` (session): the base DSN of a reachable PostgreSQL, from ``POINTEX_TEST_PG_DSN``.
  When none answers, the test fails under ``CI=true`` and is skipped otherwise.
* `pg_schema`: a random schema ``pointex_test_<hex>``, dropped with CASCADE afterwards.
* `sqlite_file`: a fresh SQLite file path under pytest's tmp_path.
* `make_store`: builds (does not open) stores on the test's own database; every store it
  built is closed afterwards. A test that never opens `store` sees an empty database.
* `store`: an opened store, the usual entry point.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from pointex.server.eventstore.port import BeforeCommit, EventStore
from pointex.server.eventstore.postgres import PostgresEventStore
from pointex.server.eventstore.sqlite import SqliteEventStore

PG_DSN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
PG_PROBE_TIMEOUT_S = 5
# A raw statement gives up quickly on a lock held by a store: tests assert that it fails.
RAW_LOCK_WAIT_MS = 200

MakeStore = Callable[..., EventStore]
RawSql = Callable[[str], Awaitable[str | None]]


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """Return the base DSN of a reachable PostgreSQL, or fail (CI) or skip (elsewhere)."""
    dsn = os.environ.get("POINTEX_TEST_PG_DSN", PG_DSN_DEFAULT)

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=PG_PROBE_TIMEOUT_S)
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close()

    # A private loop: this session fixture runs before, and outside, the tests' loops.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(probe())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        message = f"PostgreSQL not reachable at {dsn}: {error!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        loop.close()
    return dsn


@pytest.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    """Yield a random schema name for one test, and drop the schema afterwards."""
    schema = f"pointex_test_{secrets.token_hex(6)}"
    yield schema
    connection = await asyncpg.connect(pg_dsn, timeout=PG_PROBE_TIMEOUT_S)
    try:
        # The name is generated above from hex digits only.
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    """Return the path of a fresh SQLite file for one test."""
    return tmp_path / f"events-{secrets.token_hex(4)}.db"


@dataclass(frozen=True)
class _Backend:
    """What the backend-neutral fixtures below need from one backend."""

    build: MakeStore
    raw_sql: RawSql
    truncate_sql: str
    url: str


def _postgres_backend(dsn: str, schema: str) -> _Backend:
    """Describe a PostgreSQL backend on one schema."""

    def build(
        *,
        allow_unsafe_durability: bool = False,
        unsafe_durability_settings: bool = False,
        before_commit: BeforeCommit | None = None,
        application_name: str = "pointex",
    ) -> EventStore:
        settings = {"application_name": application_name}
        if unsafe_durability_settings:
            settings["synchronous_commit"] = "off"
        return PostgresEventStore(
            dsn,
            schema=schema,
            allow_unsafe_durability=allow_unsafe_durability,
            pool_connections_max=4,
            subscribe_idle_ms=100,
            server_settings=settings,
            before_commit=before_commit,
        )

    async def raw_sql(statement: str) -> str | None:
        connection = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await connection.execute(statement)
        except asyncpg.PostgresError as error:
            return str(error)
        finally:
            await connection.close()
        return None

    return _Backend(build, raw_sql, "TRUNCATE events", f"{dsn}?schema={schema}")


def _sqlite_backend(path: Path) -> _Backend:
    """Describe a SQLite backend on one file."""

    def build(
        *,
        allow_unsafe_durability: bool = False,
        unsafe_durability_settings: bool = False,
        before_commit: BeforeCommit | None = None,
        application_name: str = "pointex",
    ) -> EventStore:
        return SqliteEventStore(
            path,
            allow_unsafe_durability=allow_unsafe_durability,
            synchronous="NORMAL" if unsafe_durability_settings else "FULL",
            subscribe_idle_ms=100,
            before_commit=before_commit,
        )

    async def raw_sql(statement: str) -> str | None:
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            await connection.execute(f"PRAGMA busy_timeout = {RAW_LOCK_WAIT_MS}")
            await connection.execute(statement)
        except aiosqlite.Error as error:
            return str(error)
        finally:
            await connection.close()
        return None

    # SQLite has no TRUNCATE; an unqualified DELETE is its truncate optimisation, which
    # SQLite turns off when the table has a DELETE trigger.
    return _Backend(build, raw_sql, "DELETE FROM events", f"sqlite:///{path}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def _backend(request: pytest.FixtureRequest) -> _Backend:
    """Return the backend of this parametrisation, on a database of the test's own."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        schema: str = request.getfixturevalue("pg_schema")
        return _postgres_backend(dsn, schema)
    path: Path = request.getfixturevalue("sqlite_file")
    return _sqlite_backend(path)


@pytest.fixture
async def make_store(_backend: _Backend) -> AsyncIterator[MakeStore]:
    """Yield a builder of (unopened) stores on the test's database; close them all after.

    Options: ``allow_unsafe_durability``, ``unsafe_durability_settings`` (PostgreSQL
    ``synchronous_commit=off``, SQLite ``synchronous=NORMAL``), ``before_commit`` (a hook
    run inside each append transaction before COMMIT) and ``application_name``
    (PostgreSQL only; ignored by SQLite).
    """
    built: list[EventStore] = []

    def make(**options: Any) -> EventStore:
        new_store = _backend.build(**options)
        built.append(new_store)
        return new_store

    yield make
    for each in reversed(built):
        await each.close()


@pytest.fixture
async def store(make_store: MakeStore) -> EventStore:
    """Return an opened store on the test's database (closed by `make_store`)."""
    opened = make_store()
    await opened.open()
    return opened


@pytest.fixture
def raw_sql(_backend: _Backend) -> RawSql:
    """Return a runner of one raw SQL statement through the backend's own driver.

    It returns the database's error message, or None when the statement succeeded.
    """
    return _backend.raw_sql


@pytest.fixture
def truncate_sql(_backend: _Backend) -> str:
    """Return the backend's statement that empties the events table in one go."""
    return _backend.truncate_sql


@pytest.fixture
def store_url(_backend: _Backend) -> str:
    """Return the URL of the test's database, as `open_store` takes it."""
    return _backend.url
