"""Add the simulation's memory store to the backends every contract test runs on.

The memory store (tests/simulation/memory_store.py) is no product backend, but the
simulation trusts it to behave as the real stores do, so it passes the same contract. It has
no SQL, no URL and no durability settings: the tests about those are not collected for it
(`pytest_collection_modifyitems`), rather than collected and skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pointex.server.eventstore.port import BeforeCommit, EventStore
from tests.conftest import RawSql, _Backend, _postgres_backend, _sqlite_backend
from tests.simulation.memory_store import MemoryDatabase, MemoryEventStore

MEMORY = "memory"


def _memory_backend() -> _Backend:
    """Describe a memory backend: one database shared by every store the test builds."""
    database = MemoryDatabase()

    def build(
        *,
        allow_unsafe_durability: bool = False,
        unsafe_durability_settings: bool = False,
        before_commit: BeforeCommit | None = None,
        application_name: str = "pointex",
    ) -> EventStore:
        """Build a store on the shared database (no durability settings: skip)."""
        del allow_unsafe_durability, application_name
        assert not unsafe_durability_settings, "not collected on the memory store"
        return MemoryEventStore(database, subscribe_idle_ms=100, before_commit=before_commit)

    async def raw_sql(_statement: str) -> str | None:
        """Never called: the tests that run SQL are not collected on the memory store."""
        raise AssertionError(_statement)

    return _Backend(build, raw_sql, "", "")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), MEMORY])
def _backend(request: pytest.FixtureRequest) -> _Backend:
    """Return the backend of this parametrisation, on a database of the test's own."""
    if request.param == MEMORY:
        return _memory_backend()
    if request.param == "postgres":
        return _postgres_backend(
            request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        )
    sqlite_file: Path = request.getfixturevalue("sqlite_file")
    return _sqlite_backend(sqlite_file)


@pytest.fixture
def raw_sql(_backend: _Backend) -> RawSql:
    """Return the backend's runner of one raw SQL statement (a SQL backend's only)."""
    assert _backend.url, "not collected on the memory store"
    return _backend.raw_sql


@pytest.fixture
def store_url(_backend: _Backend) -> str:
    """Return the URL of the test's database (a SQL backend's only)."""
    assert _backend.url, "not collected on the memory store"
    return _backend.url


# What the memory store does not have: SQL, a URL (open_store opens durable stores only) and
# durability settings. The tests that need them run on the SQL backends only.
_SQL_ONLY_FIXTURES = frozenset({"raw_sql", "store_url"})
_SQL_ONLY_NAMES = ("unsafe_durability",)


def _sql_only(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & _SQL_ONLY_FIXTURES) or any(part in item.name for part in _SQL_ONLY_NAMES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out, on the memory store, the tests about SQL, URLs and durability settings."""
    left_out = [
        item
        for item in items
        if getattr(item, "callspec", None) is not None
        and item.callspec.params.get("_backend") == MEMORY  # type: ignore[attr-defined]
        and _sql_only(item)
    ]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
