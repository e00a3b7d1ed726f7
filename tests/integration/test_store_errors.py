"""The event store's boundary: driver errors translated, settings checked, URLs parsed.

Each adapter's translation table is tested with constructed driver exceptions, row by row,
and with real failures: a closed port, a backend terminated during COMMIT, a locked file.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from pointex.server import store_urls
from pointex.server.eventstore import durability, factory
from pointex.server.eventstore.planning import VersionRaceError
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    DurabilityUnsafe,
    NewEvent,
    RecordedEvent,
    StoreError,
    StoreUnavailable,
    StreamAppend,
)
from pointex.server.eventstore.postgres import PostgresEventStore
from pointex.server.eventstore.postgres import errors as pg_errors
from pointex.server.eventstore.sqlite import SqliteEventStore
from pointex.server.eventstore.sqlite import errors as sqlite_errors

ONE_EVENT = (NewEvent("PointsIssued", 1, b"x"),)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.UniqueViolationError("duplicate key"), VersionRaceError),
        (asyncpg.ConnectionDoesNotExistError("connection lost"), StoreUnavailable),
        (asyncpg.ConnectionFailureError("connection failure"), StoreUnavailable),
        (asyncpg.AdminShutdownError("terminating connection"), StoreUnavailable),
        (asyncpg.CrashShutdownError("crash"), StoreUnavailable),
        (asyncpg.CannotConnectNowError("starting up"), StoreUnavailable),
        (asyncpg.QueryCanceledError("statement timeout"), StoreUnavailable),
        (asyncpg.TooManyConnectionsError("too many"), StoreUnavailable),
        (asyncpg.DiskFullError("disk full"), StoreUnavailable),
        (asyncpg.SerializationError("serialization"), StoreUnavailable),
        (asyncpg.DeadlockDetectedError("deadlock"), StoreUnavailable),
        (asyncpg.ReadOnlySQLTransactionError("read-only"), StoreUnavailable),
        (asyncpg.InterfaceError("connection is closed"), StoreUnavailable),
        (ConnectionRefusedError("refused"), StoreUnavailable),
        (ConnectionResetError("reset"), StoreUnavailable),
        (TimeoutError("timed out"), StoreUnavailable),
        (asyncpg.InsufficientPrivilegeError("events are append-only"), StoreError),
        (asyncpg.RaiseError("raised by a trigger"), StoreError),
        (asyncpg.UndefinedTableError("no such table"), StoreError),
        (asyncpg.InternalClientError("bug"), StoreError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_postgres_translation_table(error: BaseException, expected: type[StoreError]) -> None:
    """Each asyncpg (or socket) exception becomes its store error, never CommitOutcomeUnknown."""
    translated = pg_errors.translate(error)
    assert type(translated) is expected
    assert repr(error) in str(translated)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ConnectionDoesNotExistError("connection lost"),
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionResetError("reset"),
    ],
    ids=lambda value: type(value).__name__,
)
def test_postgres_unavailable_during_commit_means_outcome_unknown(error: BaseException) -> None:
    """Losing the server during COMMIT is CommitOutcomeUnknown (a StoreUnavailable)."""
    assert type(pg_errors.translate(error, during_commit=True)) is CommitOutcomeUnknown


def test_postgres_definite_failure_during_commit_stays_definite() -> None:
    """A unique violation at COMMIT is a known failure, not an unknown outcome."""
    error = asyncpg.UniqueViolationError("duplicate key")
    assert type(pg_errors.translate(error, during_commit=True)) is VersionRaceError


def _sqlite_error(code: int, message: str = "sqlite") -> sqlite3.Error:
    """Build a sqlite3 error carrying an extended result code, as the driver raises it."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (sqlite3.SQLITE_CONSTRAINT_UNIQUE, VersionRaceError),
        (sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, VersionRaceError),
        (sqlite3.SQLITE_BUSY, StoreUnavailable),
        (sqlite3.SQLITE_BUSY_SNAPSHOT, StoreUnavailable),
        (sqlite3.SQLITE_LOCKED, StoreUnavailable),
        (sqlite3.SQLITE_IOERR_FSYNC, StoreUnavailable),
        (sqlite3.SQLITE_FULL, StoreUnavailable),
        (sqlite3.SQLITE_CANTOPEN, StoreUnavailable),
        (sqlite3.SQLITE_READONLY, StoreUnavailable),
        (sqlite3.SQLITE_CONSTRAINT_TRIGGER, StoreError),
        (sqlite3.SQLITE_CONSTRAINT_CHECK, StoreError),
        (sqlite3.SQLITE_CORRUPT, StoreError),
        (sqlite3.SQLITE_ERROR, StoreError),
    ],
)
def test_sqlite_translation_table(code: int, expected: type[StoreError]) -> None:
    """Each SQLite result code becomes its store error."""
    assert type(sqlite_errors.translate(_sqlite_error(code))) is expected


def test_sqlite_error_without_a_code_is_a_store_error() -> None:
    """A sqlite3 error without a result code is a plain StoreError."""
    assert type(sqlite_errors.translate(sqlite3.InterfaceError("misuse"))) is StoreError


def test_sqlite_io_error_during_commit_means_outcome_unknown() -> None:
    """A failed WAL sync at COMMIT may still be durable: CommitOutcomeUnknown."""
    error = _sqlite_error(sqlite3.SQLITE_IOERR_FSYNC)
    assert type(sqlite_errors.translate(error, during_commit=True)) is CommitOutcomeUnknown


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_translated_chains_driver_errors_and_passes_others_through(backend: str) -> None:
    """`translated` raises the store error from the driver's; other exceptions pass as they are."""
    if backend == "postgres":
        driver_error: BaseException = asyncpg.AdminShutdownError("x")
        translated = pg_errors.translated
    else:
        driver_error = _sqlite_error(sqlite3.SQLITE_BUSY)
        translated = sqlite_errors.translated
    with pytest.raises(StoreUnavailable) as raised, translated():
        raise driver_error
    assert raised.value.__cause__ is driver_error
    with pytest.raises(KeyError), translated():
        raise KeyError("not a driver error")


def _closed_port() -> int:
    """Return a local TCP port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_postgres_on_a_closed_port_is_unavailable() -> None:
    """Opening a PostgreSQL store on a port nobody listens on raises StoreUnavailable."""
    store = PostgresEventStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/test")
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.head_position()


@pytest.mark.postgres
async def test_postgres_backend_terminated_before_commit_is_unavailable(
    pg_dsn: str, pg_schema: str
) -> None:
    """pg_terminate_backend kills the appending connection before COMMIT.

    The append raises StoreUnavailable (CommitOutcomeUnknown: the client cannot tell), the
    events are not in the store, and the next append works on a fresh connection.
    """
    application_name = f"pointex-{pg_schema}"

    async def terminate_own_backend(_events: Sequence[RecordedEvent]) -> None:
        killer = await asyncpg.connect(pg_dsn)
        try:
            await killer.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE application_name = $1 AND state = 'idle in transaction'",
                application_name,
            )
        finally:
            await killer.close()

    store = PostgresEventStore(
        pg_dsn,
        schema=pg_schema,
        server_settings={"application_name": application_name},
        before_commit=terminate_own_backend,
    )
    await store.open()
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.append([StreamAppend("account-killed", 0, ONE_EVENT)])
        assert isinstance(raised.value, CommitOutcomeUnknown)
        assert await store.head_position() == 0
    finally:
        await store.close()


async def test_sqlite_locked_past_busy_timeout_is_unavailable(sqlite_file: Path) -> None:
    """Another connection holds the file's write lock: the append raises StoreUnavailable."""
    store = SqliteEventStore(sqlite_file, busy_ms=50)
    await store.open()
    blocker = sqlite3.connect(sqlite_file, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable):
            await store.append([StreamAppend("account-locked", 0, ONE_EVENT)])
        blocker.execute("ROLLBACK")
        written = await store.append([StreamAppend("account-locked", 0, ONE_EVENT)])
        assert [event.position for event in written] == [1]
    finally:
        blocker.close()
        await store.close()


async def test_sqlite_on_an_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    """A path that is a directory cannot be opened: StoreUnavailable."""
    with pytest.raises(StoreUnavailable):
        await SqliteEventStore(tmp_path).open()


@pytest.mark.parametrize(
    ("synchronous_commit", "fsync", "problems"),
    [
        ("on", "on", 0),
        ("local", "on", 0),
        ("remote_apply", "on", 0),
        ("off", "on", 1),
        ("on", "off", 1),
        ("off", "off", 2),
    ],
)
def test_postgres_durability_rules(synchronous_commit: str, fsync: str, problems: int) -> None:
    """synchronous_commit=off and fsync=off are unsafe; local and remote levels are safe."""
    found = durability.postgres_durability_problems(synchronous_commit, fsync)
    assert len(found) == problems


@pytest.mark.parametrize(("level", "problems"), [(0, 1), (1, 1), (2, 0), (3, 0)])
def test_sqlite_durability_rules(level: int, problems: int) -> None:
    """SQLite below synchronous=FULL (2) is unsafe."""
    assert len(durability.sqlite_durability_problems(level)) == problems


def test_enforce_durability_refuses_or_warns(caplog: pytest.LogCaptureFixture) -> None:
    """Problems raise DurabilityUnsafe, or with the override log one WARNING."""
    logger = logging.getLogger("pointex.test")
    with pytest.raises(DurabilityUnsafe):
        durability.enforce_durability(["fsync off"], allow_unsafe_durability=False, logger=logger)
    with caplog.at_level(logging.WARNING, logger="pointex.test"):
        durability.enforce_durability(["fsync off"], allow_unsafe_durability=True, logger=logger)
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///events.db", "events.db"),
        ("sqlite:////var/lib/pointex/e.db", "/var/lib/pointex/e.db"),
    ],
)
def test_sqlite_url_gives_its_path(url: str, path: str) -> None:
    """Three slashes then a relative path, four for an absolute one (SQLAlchemy's form)."""
    assert store_urls.sqlite_path(url, "event store") == path


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite:///",
        "sqlite://",
        "sqlite:///e.db?mode=memory",
        "sqlite:///file:e.db",
        "mysql://db/x",
    ],
)
def test_unsupported_or_in_memory_urls_are_refused(url: str) -> None:
    """In-memory SQLite, URLs without a path, parameters and unknown schemes are refused."""
    with pytest.raises(ValueError):
        factory.open_store(url)


def test_postgres_url_schema_parameter_is_split_from_the_dsn() -> None:
    """``?schema=`` selects the schema and is removed; other parameters stay in the DSN."""
    dsn, schema = store_urls.postgres_dsn_and_schema(
        "postgresql://u@h:5432/db?schema=tenant_a&sslmode=disable"
    )
    assert (dsn, schema) == ("postgresql://u@h:5432/db?sslmode=disable", "tenant_a")
    assert store_urls.postgres_dsn_and_schema("postgres://u@h/db") == (
        "postgres://u@h/db",
        "public",
    )


def test_open_store_chooses_the_backend_by_scheme(tmp_path: Path) -> None:
    """sqlite:// builds a SQLite store, postgresql:// a PostgreSQL store; neither opened."""
    assert isinstance(factory.open_store(f"sqlite:///{tmp_path}/e.db"), SqliteEventStore)
    assert isinstance(factory.open_store("postgresql://u@h/db?schema=s"), PostgresEventStore)


@pytest.mark.parametrize("schema", ["Bad", "a-b", "x;drop", "1abc", ""])
def test_postgres_schema_names_are_plain_identifiers(schema: str) -> None:
    """A schema name that would need quoting is refused before any SQL runs."""
    with pytest.raises(ValueError):
        PostgresEventStore("postgresql://u@h/db", schema=schema)


def test_sqlite_store_refuses_memory_and_unknown_synchronous() -> None:
    """``:memory:`` is not durable, and an unknown synchronous level is a typo."""
    with pytest.raises(ValueError):
        SqliteEventStore(":memory:")
    with pytest.raises(ValueError):
        SqliteEventStore("e.db", synchronous="SOMETIMES")


async def test_asyncio_cancellation_is_never_translated() -> None:
    """A cancelled append propagates CancelledError, which is not a driver error."""
    with pytest.raises(asyncio.CancelledError), pg_errors.translated():
        raise asyncio.CancelledError
