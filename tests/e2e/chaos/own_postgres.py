"""A PostgreSQL cluster of the test's own, which the test may crash and restart at will.

Never the shared server: `initdb` makes a throwaway cluster in a temporary directory on a
free port (as the `postgres` user when the tests run as root, which PostgreSQL refuses to
run as), and the fixture removes it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class OwnPostgres:
    """A running throwaway cluster: its DSN, and how to crash and start it."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def dsn(self) -> str:
        """Return the DSN of its `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def _ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()

    async def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        await self._ctl("-o", options, "-l", str(self.root / "log"), "-w", "start")

    async def crash(self) -> None:
        """Stop it the way a power cut would: `-m immediate`, no checkpoint, recovery at start."""
        await self._ctl("-m", "immediate", "-w", "stop")


async def _initdb(bin_dir: Path, root: Path) -> None:
    command = [
        str(bin_dir / "initdb"),
        "-D",
        str(root / "data"),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
    ]
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    """Yield a running cluster of the test's own (fail under CI=true when none can be made)."""
    if not _BIN_DIRS:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="pointex-pg-"))
    cluster = OwnPostgres(_BIN_DIRS[0], root, _free_port())
    try:
        await _initdb(cluster.bin_dir, root)
        await cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(AssertionError):
            await cluster.crash()
        shutil.rmtree(root, ignore_errors=True)
