"""Run the `pointex` command line as a subprocess, as its console script would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

COMMAND_TIMEOUT_S = 30
# The exit codes `pointex --help` documents.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


@dataclass(frozen=True)
class Run:
    """What one `pointex` run did."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, object]:
        """Return standard output parsed as one JSON document."""
        value = json.loads(self.stdout)
        assert isinstance(value, dict)
        return value


def _cli_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("POINTEX_")}
    env["NO_COLOR"] = "1"
    return env


async def start_cli(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    """Start `pointex args...` with piped output."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pointex.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=_cli_env(),
    )


async def run_cli(cwd: Path, *args: str) -> Run:
    """Run `pointex args...` to its end."""
    process = await start_cli(cwd, *args)
    stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


@dataclass(frozen=True)
class Cli:
    """`pointex` pointed at one command server and one query server, as one principal."""

    cwd: Path
    options: tuple[str, ...]

    def acting_as(self, principal: str) -> Cli:
        """Return the same CLI acting as another principal of the tokens file."""
        return Cli(self.cwd, (*self.options, "--principal", principal))

    async def __call__(self, *args: str) -> Run:
        """Run a command with this CLI's connection options after it."""
        return await run_cli(self.cwd, *args, *self.options)

    async def ok(self, *args: str) -> Run:
        """Run a command that must succeed."""
        run = await self(*args)
        assert run.code == 0, run
        return run


async def run_reads(cwd: Path, query_target: str, token: str, *args: str) -> Run:
    """Run `pointex args...` that only reads: against `query_target`, no command server."""
    targets = ("--command-target", "127.0.0.1:9", "--query-target", query_target)
    return await run_cli(cwd, *args, *targets, "--token", token)


def field(run: Run, name: str) -> str:
    """Return the value of the row `name` of a `fields` table the run printed."""
    found = re.search(rf"│ {re.escape(name)}\s+│ (.*?)\s+│", run.stdout)
    assert found is not None, (name, run.stdout)
    return found[1]
