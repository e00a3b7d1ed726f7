"""The contenders as real processes on free loopback ports, and how to read their counters.

Each contender is started with port 0 and reports the port it got on stdout; its stderr goes
to a log file in the run's scratch directory, which the runner quotes when it fails.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench import limits
from bench.loadgen import TRANSFER_SCENARIOS

_PORT_LINE: Final = re.compile(rb"listening on port (\d+)")
TRANSFER_ROW_SCENARIOS: Final = (*TRANSFER_SCENARIOS, "bulk")
# The market runs on a fresh store of its own, with the sandbox provider wired in.
MARKET_ROW_SCENARIOS: Final = (*TRANSFER_ROW_SCENARIOS, "market")
ECHO_SCENARIOS: Final = ("echo", "echo_stream")
# Pointex alone keeps projections: the replay scenario rebuilds them from its own log.
POINTEX_SCENARIOS: Final = (*MARKET_ROW_SCENARIOS, "replay")


@dataclass(frozen=True, slots=True)
class Contender:
    """How to start one contender, and which scenarios it takes part in."""

    name: str
    store: str
    module: str
    args: tuple[str, ...]
    scenarios: tuple[str, ...]
    # Contenders with the same setup_key share a database and its accounts: set up once.
    setup_key: str | None = None
    stats_file: Path | None = None
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run needs to know about where contenders keep their state."""

    pg_dsn: str
    scratch: Path
    tokens_file: Path
    schemas: list[str] = field(default_factory=list)


def new_schema(plan: Plan) -> str:
    """Return a fresh random schema name and remember it for the final cleanup."""
    schema = f"bench_{secrets.token_hex(6)}"
    plan.schemas.append(schema)
    return schema


def _pointex(plan: Plan, store: str) -> Contender:
    if store == "postgres":
        url = f"{plan.pg_dsn}?schema={new_schema(plan)}"
    else:
        url = f"sqlite:///{plan.scratch / f'events-{secrets.token_hex(4)}.db'}"
    return Contender(
        name="pointex",
        store=store,
        module="pointex.server.command.main",
        args=("--listen", "127.0.0.1:0", "--store-url", url),
        scenarios=POINTEX_SCENARIOS,
        setup_key=url,
        env=(
            ("POINTEX_AUTH_TOKENS_FILE", str(plan.tokens_file)),
            ("POINTEX_LOG_FORMAT", "json"),
            ("POINTEX_LOG_LEVEL", "WARNING"),
        ),
    )


def _lockbased(plan: Plan, lock_order: str, schema: str) -> Contender:
    stats = plan.scratch / f"lockbased-{lock_order}-stats.json"
    return Contender(
        name=f"lockbased-{lock_order}-order",
        store="postgres",
        module="bench.lockbased.server",
        args=(
            "--listen",
            "127.0.0.1:0",
            "--dsn",
            plan.pg_dsn,
            "--schema",
            schema,
            "--lock-order",
            lock_order,
            "--stats-file",
            str(stats),
        ),
        scenarios=MARKET_ROW_SCENARIOS,
        setup_key=f"lockbased:{schema}",
        stats_file=stats,
    )


def _peer(plan: Plan) -> Contender:
    """The eventsourcing library on its PostgreSQL module, in a schema of its own."""
    stats = plan.scratch / "eventsourcing-stats.json"
    schema = new_schema(plan)
    return Contender(
        name="eventsourcing",
        store="postgres",
        module="bench.peer.server",
        args=(
            "--listen", "127.0.0.1:0", "--dsn", plan.pg_dsn, "--schema", schema,
            "--stats-file", str(stats),
        ),
        scenarios=TRANSFER_ROW_SCENARIOS,
        setup_key=f"eventsourcing:{schema}",
        stats_file=stats,
    )  # fmt: skip


CONTENDER_NAMES: Final = (
    "pointex-postgres",
    "pointex-sqlite",
    "lockbased-request",
    "lockbased-sorted",
    "eventsourcing-postgres",
    "echo",
)


def build_contenders(plan: Plan, names: tuple[str, ...]) -> list[Contender]:
    """Return the named contenders, in the order they run."""
    built: list[Contender] = []
    # Both lock-based variants share one schema: the same rows, set up once.
    lock_schema = new_schema(plan) if any(n.startswith("lockbased") for n in names) else ""
    for name in names:
        if name == "pointex-postgres":
            built.append(_pointex(plan, "postgres"))
        elif name == "pointex-sqlite":
            built.append(_pointex(plan, "sqlite"))
        elif name == "lockbased-request":
            built.append(_lockbased(plan, "request", lock_schema))
        elif name == "lockbased-sorted":
            built.append(_lockbased(plan, "sorted", lock_schema))
        elif name == "eventsourcing-postgres":
            built.append(_peer(plan))
        else:
            assert name == "echo", name
            args = ("--listen", "127.0.0.1:0")
            built.append(Contender("grpc-echo", "none", "bench.echo", args, ECHO_SCENARIOS))
    return built


class StartFailed(RuntimeError):
    """A contender did not report its port; the message carries its log."""


@dataclass
class Running:
    """A started contender process."""

    contender: Contender
    process: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        """Return the loopback host:port of the contender."""
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines the process wrote to stderr."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> int:
        """Send SIGTERM, wait for the exit (kill past the bound) and return the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), limits.server_stop_timeout_s)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


async def start(contender: Contender, scratch: Path, env: dict[str, str]) -> Running:
    """Start `contender` and wait for the line that names its port."""
    log_path = scratch / f"{contender.name}-{contender.store}-{secrets.token_hex(3)}.log"
    with log_path.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", contender.module, *contender.args,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env={**env, **dict(contender.env)},
        )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(limits.server_start_timeout_s):
            while line := await process.stdout.readline():
                if match := _PORT_LINE.search(line):
                    return Running(contender, process, int(match.group(1)), log_path)
    except TimeoutError:
        process.kill()
    code = await process.wait()
    log = log_path.read_text(errors="replace")[-4000:]
    raise StartFailed(f"{contender.module} did not start (exit {code}):\n{log}")


def read_counters(contender: Contender) -> Counter[str]:
    """Return the contender's own counters (deadlocks, aborts...), empty when it has none."""
    if contender.stats_file is None or not contender.stats_file.exists():
        return Counter()
    values: dict[str, int] = json.loads(contender.stats_file.read_text())
    return Counter(values)
