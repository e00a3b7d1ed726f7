"""Real server processes on loopback, started with port 0, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointex.server.eventstore.factory import open_store
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.slices import SLICE_RANGES
from tests.e2e.cli_runner import Cli

OPERATOR_TOKEN = "operator-" + secrets.token_hex(16)
ACME_TOKEN = "partner-acme-" + secrets.token_hex(16)
OTHER_TOKEN = "partner-other-" + secrets.token_hex(16)
PROVIDER_TOKEN = "provider-" + secrets.token_hex(16)
QUERY_TOKEN = "query-" + secrets.token_hex(16)
STARTUP_TIMEOUT_S = 30
# Cluster mode: the command servers started for one "server", and their slice-range lease.
CLUSTER_SIZE = 3
# With POINTEX_TEST_CLUSTER=split: two halves, and a standby for the first (returned last).
SPLIT_PARTS = ("0-31", "32-63", "0-31")
# With POINTEX_TEST_CLUSTER=balanced: three that balance the ranges among themselves.
BALANCED_PARTS = ("balanced",) * 3
# Joining takes a renewal of each side (give, then take), a death the lease besides.
BALANCED_WITHIN_S = 30.0
CLUSTER_LEASE_MS = 3_000
STOP_TIMEOUT_S = 30
_PORT_LINE = re.compile(rb"listening on port (\d+)")


@dataclass
class ServerProcess:
    """A running server process and where it listens."""

    process: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        """Return host:port for a client channel."""
        return f"127.0.0.1:{self.port}"

    async def terminate(self) -> int:
        """Send SIGTERM and return the exit code once the process is gone."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)

    def log(self) -> str:
        """Return what the process wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")


async def start_server(
    module: str, log_path: Path, env: Mapping[str, str], *args: str
) -> ServerProcess:
    """Start `python -m module` on port 0 and wait for the line that names its port."""
    full_env = {**os.environ, "POINTEX_LISTEN": "127.0.0.1:0", "POINTEX_LOG_FORMAT": "json", **env}
    with log_path.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=full_env,
        )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while line := await process.stdout.readline():
                if match := _PORT_LINE.search(line):
                    return ServerProcess(process, int(match.group(1)), log_path)
    except TimeoutError:
        process.kill()
        await process.wait()
    code = process.returncode if process.returncode is not None else await process.wait()
    log = log_path.read_text(errors="replace")  # noqa: ASYNC240 - a short file, read once.
    pytest.fail(f"{module} did not start (exit {code}):\n{log}")


class StartCommandServer(Protocol):
    """Start a command server on a store URL; `markets=False` serves none (an empty log)."""

    def __call__(
        self,
        store_url: str,
        *,
        markets: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> Awaitable[ServerProcess]:
        """Start the server (with `extra_env` settings) and return it once it listens."""
        ...


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Return call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    """A tokens file with an operator, two partners, a provider and a query server."""
    path = tmp_path / "tokens"
    path.write_text(
        f"operator ops {OPERATOR_TOKEN}\n"
        f"partner acme {ACME_TOKEN}\n"
        f"partner other {OTHER_TOKEN}\n"
        f"payment_provider sandbox {PROVIDER_TOKEN}\n"
        f"query_server query {QUERY_TOKEN}\n"
    )
    return path


def cluster_mode() -> bool:
    """Tell whether command servers on PostgreSQL run as a cluster (POINTEX_TEST_CLUSTER).

    `1`: one server holds every slice range, two stand by. `split`: two servers split the
    ranges (`0-31`, `32-63`), and a third stands by for the first half (SPLIT_PARTS).
    `balanced`: three servers balance the ranges among themselves (BALANCED_PARTS).
    """
    return os.environ.get("POINTEX_TEST_CLUSTER", "") in {"1", "split", "balanced"}


async def rules_in_force_everywhere() -> None:
    """Wait until program rules changed through one server are in force on the others.

    Servers that split or balance the ranges read the rules again at each renewal.
    """
    if os.environ.get("POINTEX_TEST_CLUSTER", "") in {"split", "balanced"}:
        await asyncio.sleep(CLUSTER_LEASE_MS / 3000 * 1.5)


def _cluster_parts() -> tuple[str, ...]:
    """Return the slice ranges each server of the test cluster takes, the returned one last."""
    mode = os.environ.get("POINTEX_TEST_CLUSTER", "")
    if mode == "split":
        return SPLIT_PARTS
    if mode == "balanced":
        return BALANCED_PARTS
    return ("0-63",) * CLUSTER_SIZE


@pytest.fixture
async def start_command_server(
    tmp_path: Path, tokens_file: Path
) -> AsyncIterator[StartCommandServer]:
    """Start command servers on given store URLs; each is stopped after the test.

    In cluster mode (`cluster_mode`), a command server on PostgreSQL is a cluster of
    CLUSTER_SIZE: the first holds the slice ranges, and the one returned is the last standby,
    which forwards every call to it (docs/scale-out.md); with split ranges, the first two
    split them and the one returned stands by for the first half. The e2e suites run so in
    `make test`.
    """
    started: list[ServerProcess] = []
    numbers = itertools.count()  # Each server's log, numbered as it is started.

    async def start_one(store_url: str, markets: bool, env_: Mapping[str, str]) -> ServerProcess:
        log_path = tmp_path / f"command-{next(numbers)}.log"
        env = {"POINTEX_STORE_URL": store_url, "POINTEX_AUTH_TOKENS_FILE": str(tokens_file)}
        if not markets:
            # No market records its configuration at start: the log begins empty.
            no_markets = tmp_path / "no-markets.toml"
            no_markets.write_text("[markets]\n")
            env["POINTEX_MARKETS_FILE"] = str(no_markets)
        env.update(env_)
        server = await start_server("pointex.server.command.main", log_path, env)
        started.append(server)
        return server

    async def start(
        store_url: str, *, markets: bool = True, extra_env: Mapping[str, str] | None = None
    ) -> ServerProcess:
        env = dict(extra_env or {})
        # A test that sets the lease itself runs its own cluster, one server at a time.
        own_cluster = "POINTEX_SLICE_LEASE_MS" in env
        if own_cluster or not (cluster_mode() and store_url.startswith("postgresql://")):
            return await start_one(store_url, markets, env)
        env["POINTEX_SLICE_LEASE_MS"] = str(CLUSTER_LEASE_MS)
        # The one returned listens where the test asked; the others wherever is free.
        others = {key: value for key, value in env.items() if key != "POINTEX_LISTEN"}
        *first, last = _cluster_parts()
        if last == "balanced":  # All at once: the shares settle wherever they start.
            cluster = await asyncio.gather(
                *(
                    start_one(store_url, markets, {**others, "POINTEX_SLICE_RANGES": p})
                    for p in first
                ),
                start_one(store_url, markets, {**env, "POINTEX_SLICE_RANGES": last}),
            )
            for member in cluster:
                await wait_serving(member.target)
            await wait_balanced(store_url, cluster)
            return cluster[-1]
        for part in first:
            server = await start_one(store_url, markets, {**others, "POINTEX_SLICE_RANGES": part})
            await wait_serving(server.target)  # An owner, or a standby that knows one.
        server = await start_one(store_url, markets, {**env, "POINTEX_SLICE_RANGES": last})
        await wait_serving(server.target)
        return server

    yield start
    if os.environ.get("POINTEX_TEST_CLUSTER", "") == "balanced":  # No standby: all at once.
        await asyncio.gather(*(server.terminate() for server in started))
    # The standbys first: the owner's ranges need not change hands as the cluster stops.
    for server in reversed(started):
        await server.terminate()


async def held_by_owner(store_url: str) -> dict[str, int]:
    """Return how many slice ranges each owner holds by a live lease."""
    store = open_store(store_url)
    await store.open()
    try:
        assert isinstance(store, PostgresEventStore)
        leases = await store.leases()
    finally:
        await store.close()
    return dict(collections.Counter(x.owner_id for x in leases if x.expires_in_ms > 0))


def ranges_served(server: ServerProcess) -> tuple[str, int]:
    """Return a balancing server's owner id and how many ranges it said it serves last."""
    owner, served = "", -1
    for line in server.log().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if "ranges_served" in record:
            owner, served = str(record["owner_id"]), int(record["ranges_served"])
    return owner, served


async def wait_balanced(store_url: str, servers: Sequence[ServerProcess]) -> dict[str, int]:
    """Wait until `servers` hold every range, evenly, and each serves all it holds."""
    held: dict[str, int] = {}
    try:
        async with asyncio.timeout(BALANCED_WITHIN_S):
            while True:
                held = await held_by_owner(store_url)
                if (
                    len(held) == len(servers)
                    and sum(held.values()) == SLICE_RANGES
                    and max(held.values()) - min(held.values()) <= 1
                    and dict(ranges_served(server) for server in servers) == held
                ):
                    break
                await asyncio.sleep(0.1)
    except TimeoutError:
        served = [ranges_served(server) for server in servers]
        pytest.fail(f"not balanced within {BALANCED_WITHIN_S} s: held {held}, served {served}")
    # Each server reads the owners again at its next renewal: until then, one whose last look
    # fell while a range moved sends that range's calls nowhere (UNAVAILABLE, retried).
    await asyncio.sleep(CLUSTER_LEASE_MS / 3000)
    return held


@pytest.fixture
def default_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return a fresh SQLite store, or in cluster mode a fresh PostgreSQL schema."""
    if cluster_mode():
        return f"{request.getfixturevalue('pg_dsn')}?schema={request.getfixturevalue('pg_schema')}"
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
async def command_server(
    default_store_url: str, start_command_server: StartCommandServer
) -> ServerProcess:
    """A command server on a fresh SQLite store (in cluster mode: a cluster on PostgreSQL)."""
    return await start_command_server(default_store_url)


async def wait_serving(target: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until the server at `target` reports SERVING (the query server: feed connected)."""
    async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(timeout_s):
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.aio.AioRpcError as error:
                # gRPC shares connections to one address across channels: right after a
                # restart on the same port, a new channel can fail fast with the old
                # connection's error until its reconnect backoff ends.
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            else:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.05)


StartQueryServer = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def start_query_server(tmp_path: Path, tokens_file: Path) -> AsyncIterator[StartQueryServer]:
    """Start query servers following a command server; each is stopped after the test.

    `start(command_target, read_store_url=None, wait=True)`: the read store defaults to one
    SQLite file per test (so a restarted server finds its read models); with `wait`, returns
    once the server is SERVING (its feed connected).
    """
    started: list[ServerProcess] = []

    async def start(
        command_target: str,
        read_store_url: str | None = None,
        *,
        wait: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        env = {
            "POINTEX_AUTH_TOKENS_FILE": str(tokens_file),
            "POINTEX_READ_STORE_URL": read_store_url or f"sqlite:///{tmp_path / 'read.db'}",
            "POINTEX_COMMAND_TARGET": command_target,
            "POINTEX_FEED_TOKEN": QUERY_TOKEN,
            **(extra_env or {}),
        }
        log_path = tmp_path / f"query-{len(started)}.log"
        server = await start_server("pointex.server.query.main", log_path, env)
        started.append(server)
        if wait:
            try:
                await wait_serving(server.target)
            except TimeoutError:
                pytest.fail(f"the query server never reported SERVING:\n{server.log()}")
        return server

    yield start
    for server in started:
        await server.terminate()


@pytest.fixture
async def query_server(
    command_server: ServerProcess, start_query_server: StartQueryServer
) -> ServerProcess:
    """A query server following `command_server`, SERVING."""
    return await start_query_server(command_server.target)


@dataclass
class Stack:
    """A whole Pointex on loopback: sandbox provider, command server and query server.

    The sandbox pays every payment it is asked for after `payment_delay_ms` (no failures),
    so a trade settles on its own, as it would behind a real gateway.
    """

    command: ServerProcess
    query: ServerProcess
    sandbox: ServerProcess
    tokens_file: Path

    def env(self) -> dict[str, str]:
        """Return the environment an example or SDK script reads to reach this stack."""
        return {
            "POINTEX_COMMAND_TARGET": self.command.target,
            "POINTEX_QUERY_TARGET": self.query.target,
            "POINTEX_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "POINTEX_PARTNER_TOKEN": ACME_TOKEN,
            "POINTEX_PARTNER_ID": "acme",
            "POINTEX_PROVIDER_TOKEN": PROVIDER_TOKEN,
            "POINTEX_PROVIDER_SECRET": STACK_PROVIDER_SECRET,
        }


STACK_PROVIDER_SECRET = "whsec_" + secrets.token_hex(16)
STACK_PAYMENT_DELAY_MS = 200


@pytest.fixture
def payment_delay_ms() -> int:
    """How long the stack's sandbox waits before it pays (a test module may override this)."""
    return STACK_PAYMENT_DELAY_MS


@contextlib.asynccontextmanager
async def sandbox_provider(
    tmp_path: Path, command_target: str, secret: str, **settings: str
) -> AsyncIterator[tuple[ServerProcess, Path]]:
    """Run the sandbox provider calling back `command_target`, signing with `secret` (key k1).

    Yields it and a providers file naming it, for the command servers. `settings`: more of
    its environment (e.g. POINTEX_PAYMENT_DELAY_MS). Stopped on leaving.
    """
    env = {
        "POINTEX_COMMAND_TARGET": command_target,
        "POINTEX_PROVIDER_SECRET": secret,
        "POINTEX_PROVIDER_KEY_ID": "k1",
        "POINTEX_CALLBACK_TOKEN": PROVIDER_TOKEN,
        **settings,
    }
    sandbox = await start_server(
        "pointex.server.payments.sandbox.main", tmp_path / "sandbox.log", env
    )
    try:
        await wait_serving(sandbox.target)
        providers = tmp_path / "providers.toml"
        providers.write_text(
            f'[providers.sandbox]\nkind = "sandbox"\ntarget = "{sandbox.target}"\n'
            f'[[providers.sandbox.keys]]\nkey_id = "k1"\nsecret = "{secret}"\n'
        )
        yield sandbox, providers
    finally:
        await sandbox.terminate()


@pytest.fixture
async def stack(  # noqa: PLR0917 - pytest injects fixtures by name.
    default_store_url: str,
    tmp_path: Path,
    unused_tcp_port: int,
    tokens_file: Path,
    payment_delay_ms: int,
    start_command_server: StartCommandServer,
    start_query_server: StartQueryServer,
) -> AsyncIterator[Stack]:
    """Start the sandbox, then the command server it calls back, then the query server.

    The command server is on SQLite, or in cluster mode a cluster on PostgreSQL.
    """
    command_target = f"127.0.0.1:{unused_tcp_port}"
    async with sandbox_provider(
        tmp_path,
        command_target,
        STACK_PROVIDER_SECRET,
        POINTEX_PAYMENT_DELAY_MS=str(payment_delay_ms),
        POINTEX_PAYMENT_FAILURE_RATE_BPS="0",
    ) as (sandbox, providers):
        command = await start_command_server(
            default_store_url,
            extra_env={
                "POINTEX_LISTEN": command_target,
                "POINTEX_PAYMENT_PROVIDERS_FILE": str(providers),
            },
        )
        query = await start_query_server(command.target)
        yield Stack(command, query, sandbox, tokens_file)


@pytest.fixture
def cli(
    tmp_path: Path, tokens_file: Path, command_server: ServerProcess, query_server: ServerProcess
) -> Cli:
    """`pointex` on a fresh command server and its query server, as the operator."""
    options = (
        "--command-target",
        command_server.target,
        "--query-target",
        query_server.target,
        "--token-file",
        str(tokens_file),
    )
    return Cli(tmp_path, options)
