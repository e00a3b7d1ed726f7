"""Both servers as real processes: they start, answer health and reflection, and drain."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.conftest import ServerProcess, StartCommandServer

SERVING = health_pb2.HealthCheckResponse.SERVING


async def _health(target: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(reply.status)


async def _reflected_services(target: str) -> set[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        async for reply in call:
            return {s.name for s in reply.list_services_response.service}
    return set()


async def test_both_servers_answer_health_serving(
    command_server: ServerProcess, query_server: ServerProcess
) -> None:
    """The command and query servers each report SERVING for the server as a whole."""
    assert await _health(command_server.target) == SERVING
    assert await _health(query_server.target) == SERVING


async def test_command_server_reflects_its_services(command_server: ServerProcess) -> None:
    """Server reflection lists EventFeed, health and reflection, and each is SERVING."""
    names = await _reflected_services(command_server.target)
    assert "pointex.v1.EventFeed" in names
    assert "grpc.health.v1.Health" in names
    assert "grpc.reflection.v1alpha.ServerReflection" in names
    assert await _health(command_server.target, "pointex.v1.EventFeed") == SERVING


async def test_query_server_reflects_health(query_server: ServerProcess) -> None:
    """The query server offers reflection with at least the health service."""
    assert "grpc.health.v1.Health" in await _reflected_services(query_server.target)


async def test_sigterm_drains_and_exits_zero(command_server: ServerProcess) -> None:
    """SIGTERM makes the command server exit 0 and log its shutdown."""
    assert await command_server.terminate() == 0
    assert '"msg": "stopped"' in command_server.log()


async def test_invalid_setting_exits_2_naming_it() -> None:
    """A bad POINTEX_* value stops the server at once with exit code 2 and names the setting."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pointex.server.command.main",
        "--listen",
        "nowhere",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"listen" in stderr


async def test_help_lists_every_variable() -> None:
    """`--help` documents the flags with their environment variables."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pointex.server.query.main",
        "--help",
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    assert b"POINTEX_COMMAND_TARGET" in stdout
    assert b"POINTEX_READ_STORE_URL" in stdout


@pytest.mark.parametrize(
    ("store_url", "code", "said"),
    [
        ("sqlite:///:memory:", 2, "durable SQLite file"),
        ("postgresql://postgres@127.0.0.1:1/none", 3, "store refused"),
    ],
)
async def test_unusable_store_exits_with_its_code(
    tokens_file: Path, store_url: str, code: int, said: str
) -> None:
    """An in-memory SQLite URL exits 2 (configuration); an unreachable store exits 3."""
    env = {
        **os.environ,
        "POINTEX_STORE_URL": store_url,
        "POINTEX_AUTH_TOKENS_FILE": str(tokens_file),
        "POINTEX_LISTEN": "127.0.0.1:0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pointex.server.command.main",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == code
    assert said.encode() in stderr
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_each_event_loop_serves_and_is_logged(
    tmp_path: Path, start_command_server: StartCommandServer, loop: str
) -> None:
    """POINTEX_EVENT_LOOP picks the loop (uvloop by default); the server says which at start."""
    env = {} if loop == "uvloop" else {"POINTEX_EVENT_LOOP": loop}
    server = await start_command_server(f"sqlite:///{tmp_path / 'events.db'}", extra_env=env)
    assert await _health(server.target) == SERVING
    assert f'"event_loop": "{loop}"' in server.log()
