"""The `pointex-sandbox-provider` process: starts on port 0, reports health, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import grpc

from pointex.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from tests.e2e.conftest import start_server, wait_serving

MODULE = "pointex.server.payments.sandbox.main"


def _env(unused_port: int) -> dict[str, str]:
    return {
        "POINTEX_COMMAND_TARGET": f"127.0.0.1:{unused_port}",
        "POINTEX_PROVIDER_SECRET": secrets.token_urlsafe(32),
        "POINTEX_CALLBACK_TOKEN": "provider-" + secrets.token_hex(16),
        # Longer than the test: no callback is attempted while it runs.
        "POINTEX_PAYMENT_DELAY_MS": "600000",
    }


async def test_sandbox_process_serves_and_stops_cleanly(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The process serves health and CreatePayment on port 0, then exits 0 on SIGTERM."""
    server = await start_server(MODULE, tmp_path / "sandbox.log", _env(unused_tcp_port))
    try:
        await wait_serving(server.target)
        async with grpc.aio.insecure_channel(server.target) as channel:
            reply = await sandbox_pb2_grpc.SandboxGatewayServiceStub(channel).CreatePayment(
                sandbox_pb2.CreatePaymentRequest(
                    trade_id=f"T-{secrets.token_hex(6)}",
                    amount_minor=100,
                    currency="CNY",
                    buyer_account_id="buyer-1",
                ),
                timeout=10,
            )
        assert reply.created
    finally:
        code = await server.terminate()
    assert code == 0, server.log()
    assert "payments left unsettled at shutdown" in server.log()


async def test_sandbox_process_refuses_bad_settings(unused_tcp_port: int) -> None:
    """Without a callback token the process exits 2 and names the setting."""
    env = _env(unused_tcp_port)
    del env["POINTEX_CALLBACK_TOKEN"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        MODULE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "", **env},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"callback_token" in stderr
