"""Credentials as an operator runs them: digests at rest, rotation and revocation live, limits.

The tokens file is written with `pointex admin token` only, so it holds digests and never a
token. The command server follows it while it runs: a new token works and a revoked one
stops working without a restart. Failed authentications are counted and, past the limit,
their peer is refused for a while; no token ever reaches the server's log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pointex.server import limits
from pointex.v1 import command_service_pb2 as pb
from tests.e2e.cli_runner import EXIT_USAGE, run_cli
from tests.e2e.conftest import StartCommandServer, bearer
from tests.e2e.test_metrics import METRICS_ON, scrape

# The server looks at the file this often; a change shows within a few of these.
_FOLLOW_S = 10 * limits.tokens_reload_interval_ms / 1000


async def _create(tmp_path: Path, tokens: Path, role: str, principal: str) -> tuple[str, str]:
    """Run `pointex admin token create`; return (token, token id)."""
    run = await run_cli(
        tmp_path,
        "admin",
        "token",
        "create",
        "--role",
        role,
        "--principal-id",
        principal,
        "--tokens-file",
        str(tokens),
        "--json",
    )
    assert run.code == 0, run
    created = run.json()
    return str(created["token"]), str(created["token_id"])


Probe = grpc.aio.UnaryUnaryMultiCallable[pb.OpenAccountRequest, pb.OpenAccountResponse]
# An authenticated caller's empty OpenAccount is refused as malformed, and changes nothing.
AUTHENTICATED = grpc.StatusCode.INVALID_ARGUMENT


def _probe(channel: grpc.aio.Channel) -> Probe:
    """Return a call that tells whether a token authenticates, without changing anything."""
    return channel.unary_unary(
        "/pointex.v1.CommandService/OpenAccount",
        pb.OpenAccountRequest.SerializeToString,
        pb.OpenAccountResponse.FromString,
    )


async def _code(probe: Probe, token: str) -> grpc.StatusCode:
    """Return the code of the probe made with `token` (AUTHENTICATED once it authenticates)."""
    try:
        await probe(pb.OpenAccountRequest(), metadata=bearer(token), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + _FOLLOW_S
    while not await check():
        assert time.monotonic() < deadline, "the server did not follow the tokens file"
        await asyncio.sleep(0.1)


async def test_tokens_rotate_and_revoke_without_a_restart_and_stay_out_of_the_log(
    tmp_path: Path, start_command_server: StartCommandServer
) -> None:
    """Old and new token both work during a rotation; the revoked one stops; the log is clean."""
    tokens = tmp_path / "hashed-tokens"
    operator, _ = await _create(tmp_path, tokens, "operator", "ops")
    old, old_id = await _create(tmp_path, tokens, "partner", "acme")
    assert old not in tokens.read_text()
    assert operator not in tokens.read_text()
    server = await start_command_server(
        f"sqlite:///{tmp_path / 'events.db'}",
        extra_env={"POINTEX_AUTH_TOKENS_FILE": str(tokens)},
    )
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = _probe(channel)
        assert await _code(stub, old) == AUTHENTICATED
        new, _ = await _create(tmp_path, tokens, "partner", "acme")

        async def new_works() -> bool:
            return await _code(stub, new) == AUTHENTICATED

        await _until(new_works)
        assert await _code(stub, old) == AUTHENTICATED  # Both, meanwhile.
        listed = await run_cli(tmp_path, "admin", "token", "list", "--tokens-file", str(tokens))
        assert listed.code == 0, listed
        assert old_id in listed.stdout
        assert new not in listed.stdout
        revoked = await run_cli(
            tmp_path, "admin", "token", "revoke", old_id, "--tokens-file", str(tokens)
        )
        assert revoked.code == 0, revoked

        async def old_refused() -> bool:
            return await _code(stub, old) == grpc.StatusCode.UNAUTHENTICATED

        await _until(old_refused)
        assert await _code(stub, new) == AUTHENTICATED
    again = await run_cli(
        tmp_path, "admin", "token", "revoke", old_id, "--tokens-file", str(tokens)
    )
    assert again.code == EXIT_USAGE
    assert "no token" in again.stderr
    await server.terminate()
    log = server.log()
    assert "tokens file reloaded" in log
    for token in (operator, old, new):
        assert token not in log


async def test_failed_authentications_are_counted_and_their_peer_is_held_back(
    tmp_path: Path, start_command_server: StartCommandServer
) -> None:
    """Past the failures allowed, a new token from the peer gets AUTH_RATE_LIMITED + RetryInfo."""
    tokens = tmp_path / "hashed-tokens"
    operator, _ = await _create(tmp_path, tokens, "operator", "ops")
    partner, _ = await _create(tmp_path, tokens, "partner", "acme")
    server = await start_command_server(
        f"sqlite:///{tmp_path / 'events.db'}",
        extra_env={"POINTEX_AUTH_TOKENS_FILE": str(tokens), **METRICS_ON},
    )
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = _probe(channel)
        assert await _code(stub, operator) == AUTHENTICATED  # Proven first.
        guesses = [await _code(stub, f"ptx_guess-{n:04d}-padding") for n in range(25)]
        allowed = limits.auth_failures_per_peer_max
        assert guesses[:allowed] == [grpc.StatusCode.UNAUTHENTICATED] * allowed
        assert set(guesses[allowed:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        try:
            await stub(pb.OpenAccountRequest(), metadata=bearer(partner), timeout=5)
        except grpc.aio.AioRpcError as error:
            limited = error
        else:
            raise AssertionError("a new token from a held-back peer was let through")
        status = rpc_status.from_call(limited)  # type: ignore[arg-type]
        assert status is not None
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        assert any(d.Unpack(info) for d in status.details)
        assert any(d.Unpack(retry) for d in status.details)
        assert info.reason == "AUTH_RATE_LIMITED"
        assert retry.retry_delay.ToMilliseconds() > 0
        assert await _code(stub, operator) == AUTHENTICATED  # Still works.
    metrics = await scrape(server)
    assert f"pointex_auth_failures_total {allowed}.0" in metrics
    assert f"pointex_auth_rate_limited_total {25 - allowed + 1}.0" in metrics
