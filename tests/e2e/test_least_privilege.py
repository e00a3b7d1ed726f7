"""Least privilege on PostgreSQL: the owner migrates, each server holds only what it uses.

Each PostgreSQL test makes a database and three roles with random names from the scripts
in deploy/ (the ones docs/operations.md quotes, with the role names replaced) and drops
them afterwards, whether the test passed or not. The servers are real processes.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.server.eventstore.postgres.store import PostgresEventStore
from tests.e2e.conftest import (
    OPERATOR_TOKEN,
    ServerProcess,
    StartCommandServer,
    StartQueryServer,
)

ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = ROOT / "deploy" / "postgres-roles.sql"
GRANTS_SQL = ROOT / "deploy" / "postgres-grants.sql"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"
EVENTS_SCHEMA = "pointex_events"
READ_SCHEMA = "pointex_read"
# The scripts' role names; each test replaces them with names of its own.
_ROLE_NAME = re.compile(r"\bpointex_(owner|command|query)\b")
EXIT_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Deployment:
    """A database set up by deploy/postgres-roles.sql, with roles named for one test."""

    admin_dsn: str  # The superuser, on the test's database.
    roles: Mapping[str, str]  # "owner", "command", "query" -> the test's role name
    password: str  # Every role's: a server may ask for one even where tests trust.

    def script(self, path: Path) -> str:
        """Return a deploy/ script with this test's role names."""
        return _ROLE_NAME.sub(lambda m: self.roles[m.group(1)], path.read_text())

    def dsn(self, role: str) -> str:
        """Return the DSN of the test's database as `role` ("owner", "command", "query")."""
        parts = urlsplit(self.admin_dsn)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{self.roles[role]}:{self.password}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    def url(self, role: str, schema: str) -> str:
        """Return the store URL of `schema` as `role`."""
        separator = "&" if urlsplit(self.admin_dsn).query else "?"
        return f"{self.dsn(role)}{separator}schema={schema}"

    async def run(self, role: str, path: Path) -> None:
        """Run a deploy/ script as `role` ("admin" for the superuser)."""
        dsn = self.admin_dsn if role == "admin" else self.dsn(role)
        connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            await connection.execute(self.script(path))
        finally:
            await connection.close()


def _on_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@pytest.fixture
async def deployment(pg_dsn: str) -> AsyncIterator[Deployment]:
    """Yield a fresh database after deploy/postgres-roles.sql; drop it and the roles after."""
    suffix = secrets.token_hex(6)
    database = f"pointex_lp_{suffix}"
    roles = {kind: f"pointex_lp_{suffix}_{kind}" for kind in ("owner", "command", "query")}
    password = secrets.token_hex(16)
    admin = await asyncpg.connect(pg_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        # Generated names: hex digits and fixed words only.
        await admin.execute(f"CREATE DATABASE {database}")
        deployed = Deployment(_on_database(pg_dsn, database), roles, password)
        await deployed.run("admin", ROLES_SQL)
        for role in roles.values():
            await admin.execute(f"ALTER ROLE {role} PASSWORD '{password}'")
        yield deployed
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        for role in roles.values():
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def run_command_main(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run `pointex-command-server` (as a module) to its exit; return code, stdout, stderr."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("POINTEX_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pointex.server.command.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**inherited, "POINTEX_LOG_FORMAT": "text", **env},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), EXIT_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def migrate(deployment: Deployment) -> None:
    """Apply the event store's migrations as the owner, then the command server's grants."""
    code, out, err = await run_command_main(
        "migrate", "--store-url", deployment.url("owner", EVENTS_SCHEMA), env={}
    )
    assert code == 0, err
    assert "pointex event store at schema version 6" in out
    await deployment.run("owner", GRANTS_SQL)


async def refusal(connection: asyncpg.Connection, statement: str) -> str:
    """Return PostgreSQL's message refusing `statement` (the test fails if it is accepted)."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await connection.execute(statement)
    return str(refused.value)


async def move_points(command: ServerProcess, query: ServerProcess) -> tuple[int, int]:
    """Issue 300 points to a member who gives 120 away; return both members' balances."""
    suffix = uuid.uuid4().hex[:8]
    shop, alice, bob = (f"acme:{name}-{suffix}" for name in ("shop", "alice", "bob"))
    targets = Targets(command.target, query.target)
    async with AsyncPointexClient(targets, OPERATOR_TOKEN) as operator:
        await operator.open_account(shop, "merchant", owner_partner_id="acme")
        await operator.open_account(alice, "member", owner_partner_id="acme")
        await operator.open_account(bob, "member", owner_partner_id="acme")
        await operator.mint(shop, 1_000)
        await operator.issue(shop, alice, 300, "welcome")
        await operator.transfer(alice, bob, 120, "gift")
        alice_now = await operator.get_account(alice, consistent=True)
        bob_now = await operator.get_account(bob, consistent=True)
    return alice_now.available_points, bob_now.available_points


@pytest.mark.postgres
async def test_servers_serve_with_least_privilege_and_postgres_keeps_the_log_append_only(
    deployment: Deployment,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
    unused_tcp_port: int,
) -> None:
    """The owner migrates; both servers serve on their own roles; changing an event fails.

    The command server's role holds SELECT and INSERT on the events (and what snapshots
    need); the query server's owns the read store's schema and cannot see the event store.
    A restart saves the recovery checkpoint over the first one (the snapshot upsert).
    """
    await migrate(deployment)
    command_url = deployment.url("command", EVENTS_SCHEMA)
    # A fixed port, so that the query server finds the command server again after its restart.
    listen = {"POINTEX_LISTEN": f"127.0.0.1:{unused_tcp_port}"}
    command = await start_command_server(command_url, extra_env=listen)
    query = await start_query_server(command.target, deployment.url("query", READ_SCHEMA))
    assert await move_points(command, query) == (180, 120)
    assert await command.terminate() == 0
    command = await start_command_server(command_url, extra_env=listen)
    assert await move_points(command, query) == (180, 120)
    assert "not saved" not in command.log()
    assert "could not save" not in command.log()

    as_command = await asyncpg.connect(
        deployment.dsn("command"), server_settings={"search_path": EVENTS_SCHEMA}
    )
    as_query = await asyncpg.connect(deployment.dsn("query"))
    try:
        count = await as_command.fetchval("SELECT count(*) FROM events")
        assert count > 0
        assert await as_command.fetchval("SELECT count(*) FROM snapshots") > 0
        for statement in (
            "UPDATE events SET type = type",
            "DELETE FROM events WHERE position = 1",
            "TRUNCATE events",
        ):
            assert "permission denied for table events" in await refusal(as_command, statement)
        assert "permission denied" in await refusal(as_command, "CREATE TABLE spare (a int)")
        assert await as_command.fetchval("SELECT count(*) FROM events") == count
        # A large group commit's one call (migrations 0002, 0003) is granted: with nothing to append
        # and nothing expected it writes nothing and reports the head.
        nothing = ", ".join(["'{}'"] * 10)
        inserted, head, _ = await as_command.fetchrow(f"SELECT * FROM append_events({nothing})")
        assert (inserted, head) == (0, count)
        # So are the slice-range leases (migration 0003): take one, renew it, give it up.
        store = PostgresEventStore(deployment.dsn("command"), schema=EVENTS_SCHEMA)
        await store.open()
        try:
            leases = store.slice_leases("least-privilege-run", 60_000)
            assert await leases.acquire([63]) == {63: 1}
            assert await leases.renew() == set()
            await leases.release()
            # And the members that balance the ranges (migration 0006): join, read, leave.
            await leases.join()
            assert await store.members() == ["least-privilege-run"]
            await leases.leave()
            assert await store.members() == []
        finally:
            await store.close()
        assert "permission denied for schema" in await refusal(
            as_query, f"SELECT count(*) FROM {EVENTS_SCHEMA}.events"
        )
    finally:
        await as_command.close()
        await as_query.close()


@pytest.mark.postgres
async def test_restricted_role_on_an_unmigrated_store_exits_naming_the_migration(
    deployment: Deployment, tokens_file: Path
) -> None:
    """Started before `migrate`, the command server exits 3 naming what to run; nothing made."""
    code, _, err = await run_command_main(
        env={
            "POINTEX_STORE_URL": deployment.url("command", EVENTS_SCHEMA),
            "POINTEX_AUTH_TOKENS_FILE": str(tokens_file),
            "POINTEX_LISTEN": "127.0.0.1:0",
        }
    )
    assert code == 3, err
    assert "lacks migration 0001_events.sql" in err
    assert "pointex-command-server migrate" in err
    assert "Traceback" not in err
    admin = await asyncpg.connect(deployment.admin_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        tables = await admin.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1", EVENTS_SCHEMA
        )
    finally:
        await admin.close()
    assert tables == 0


@pytest.mark.postgres
async def test_restricted_role_without_its_grants_exits_saying_so(
    deployment: Deployment, tokens_file: Path
) -> None:
    """Migrated but not granted, the command server exits 3 pointing at the privileges."""
    code, out, err = await run_command_main(
        "migrate", "--store-url", deployment.url("owner", EVENTS_SCHEMA), env={}
    )
    assert code == 0, err
    assert "schema version 6" in out
    code, _, err = await run_command_main(
        env={
            "POINTEX_STORE_URL": deployment.url("command", EVENTS_SCHEMA),
            "POINTEX_AUTH_TOKENS_FILE": str(tokens_file),
            "POINTEX_LISTEN": "127.0.0.1:0",
        }
    )
    assert code == 3, err
    assert "this role may not read the event store" in err
    assert "Traceback" not in err


async def test_migrate_needs_no_tokens_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    """`migrate` applies the migrations once, reports the version, and takes no server flag."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    first = await run_command_main("migrate", "--store-url", url, env={})
    second = await run_command_main("migrate", env={"POINTEX_STORE_URL": url})
    assert first[0] == 0, first[2]
    assert second[0] == 0, second[2]
    assert "schema version 1" in first[1]
    assert "schema version 1" in second[1]
    assert "applied event-store migration 0001_events.sql" in first[2]
    assert "applied event-store migration" not in second[2]
    code, out, _ = await run_command_main("migrate", "--help", env={})
    assert code == 0
    assert "--store-url" in out
    assert "--listen" not in out
    code, _, err = await run_command_main("migrate", "--listen", "127.0.0.1:0", env={})
    assert code == 2
    assert "--listen" in err


def test_operations_guide_quotes_the_deploy_scripts_verbatim() -> None:
    """docs/operations.md shows deploy/*.sql exactly as the tests above run them."""
    text = OPERATIONS_GUIDE.read_text()
    for script in (ROLES_SQL, GRANTS_SQL):
        marker = f"<!-- quoted from {script.relative_to(ROOT)}; a test keeps it verbatim -->"
        assert marker in text, marker
        block = text.split(f"{marker}\n```sql\n", 1)[1].split("\n```\n", 1)[0]
        assert f"{block}\n" == script.read_text()
