"""The TypeScript SDK against real servers: its Node examples on the whole stack, and TLS.

The examples run as a partner runs them, with the stack's environment. `make install` (and
`make lint`) build them into sdks/typescript/dist/; without Node or that build the tests
fail under CI=true and are skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from tests.e2e.conftest import OPERATOR_TOKEN, Stack
from tests.e2e.test_tls import start_tls_server
from tests.node import TS_DIST, node_or_skip

BUILT_EXAMPLES = TS_DIST / "examples"
# Opens one account over TLS with the SDK's client; prints the reply's account id, or the
# failure's code. Its environment names the target and the PEM files.
TLS_SCRIPT = """
import { createPointexClient, pointexError, requestId, tlsFromFiles } from "@pointex/client";
const env = process.env;
const client = createPointexClient({
  commandTarget: env.TARGET, queryTarget: env.TARGET, token: env.TOKEN,
  tls: tlsFromFiles({ ca: env.CA, cert: env.CERT, key: env.KEY, serverName: "localhost" }),
});
try {
  const reply = await client.commands.openAccount(
    { requestId: requestId(), accountId: env.ACCOUNT, kind: 1, ownerPartnerId: "acme" });
  console.log(`opened ${reply.account?.accountId}`);
} catch (thrown) {
  console.log(`failed ${pointexError(thrown).codeName}`);
} finally {
  client.close();
}
"""
SCRIPT_TIMEOUT_S = 60


@dataclass(frozen=True)
class Ran:
    """What one example run did."""

    code: int
    stdout: str
    stderr: str


async def _run(stack: Stack, script: str) -> Ran:
    """Run `node sdks/typescript/dist/examples/<script>` with the stack's environment."""
    built = BUILT_EXAMPLES / script
    return await _node(stack.env(), str(built), built=built)


async def _node(env: Mapping[str, str], *args: str, built: Path) -> Ran:
    """Run `node args...` from the SDK's folder (where `@pointex/client` resolves)."""
    node = node_or_skip(built)
    process = await asyncio.create_subprocess_exec(
        node,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        cwd=TS_DIST.parent,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"node {' '.join(args)} did not finish within {SCRIPT_TIMEOUT_S} s")
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


async def test_the_node_trade_example_follows_its_trade_until_settled(stack: Stack) -> None:
    """trade.js funds, issues, transfers, trades; the sandbox pays; the points land."""
    ran = await _run(stack, "trade.js")
    assert ran.code == 0, ran.stdout + ran.stderr
    assert "sell refused: INSUFFICIENT_POINTS (FAILED_PRECONDITION)" in ran.stdout
    assert "1 trade(s) to pay" in ran.stdout
    assert re.search(r"^pay \S+ at \S+$", ran.stdout, re.MULTILINE), ran.stdout
    assert re.search(r"^trade \S+: SETTLED$", ran.stdout, re.MULTILINE), ran.stdout
    # The buyer was given 50 points and bought 300.
    balance = re.search(r"^(acme:buyer-\w+) has (\d+) points$", ran.stdout, re.MULTILINE)
    assert balance is not None, ran.stdout
    assert balance[2] == "350"
    assert "trade complete" in ran.stdout
    targets = Targets(stack.command.target, stack.query.target)
    async with AsyncPointexClient(targets, OPERATOR_TOKEN) as operator:
        buyer = await operator.get_account(balance[1])
    assert buyer.available_points == 350
    assert buyer.held_points == 0


async def test_the_typescript_tour_that_the_partner_guide_quotes_runs_green(stack: Stack) -> None:
    """Every TypeScript snippet of docs/partners.md comes from tour.ts, which must work."""
    ran = await _run(stack, "tour.js")
    assert ran.code == 0, ran.stdout + ran.stderr
    assert "FAILED_PRECONDITION INSUFFICIENT_POINTS" in ran.stdout
    assert "ACCOUNT_NOT_FOUND" in ran.stdout
    assert "alice received 10" in ran.stdout
    assert "TRANSFER_OUT -80 happy birthday" in ran.stdout
    assert re.search(r"^trade \S+: SETTLED$", ran.stdout, re.MULTILINE), ran.stdout
    # 80 given, 25 referral, 20 given back (with a fee quote), 5 bulk, 40 bought.
    assert "bob has 130 points" in ran.stdout
    assert "bob gives 20 and pays 0 more: 20 in all" in ran.stdout  # No fee schedule.
    assert "row 3: ACCOUNT_NOT_FOUND" in ran.stdout
    assert "callback: SETTLED" in ran.stdout
    assert "tour complete" in ran.stdout


async def test_the_client_speaks_mutual_tls_and_is_refused_without_its_certificate(
    tmp_path: Path, tokens_file: Path
) -> None:
    """Over mutual TLS the SDK's client opens an account; without a client certificate, not."""
    authority = trustme.CA()
    server = await start_tls_server(tmp_path, tokens_file, authority, mutual=True)
    try:
        authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        issued = authority.issue_cert("pointex-client")
        issued.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
        issued.private_key_pem.write_to_path(str(tmp_path / "client-key.pem"))
        env = {
            "TARGET": f"127.0.0.1:{server.port}",
            "TOKEN": OPERATOR_TOKEN,
            "CA": str(tmp_path / "ca.pem"),
            "ACCOUNT": "acme:tls-member",
        }
        script = ("--input-type=module", "--eval", TLS_SCRIPT)
        built = TS_DIST / "src" / "index.js"
        refused = await _node(env, *script, built=built)
        mutual = {
            **env,
            "CERT": str(tmp_path / "client.pem"),
            "KEY": str(tmp_path / "client-key.pem"),
        }
        opened = await _node(mutual, *script, built=built)
    finally:
        await server.terminate()
    # The server ends the TLS session of a client without a certificate; Connect reports the
    # stream's end with the code its HTTP/2 error maps to (CANCELLED), never a reply.
    assert refused.stdout.startswith("failed "), refused.stdout + refused.stderr
    assert opened.stdout.strip() == "opened acme:tls-member", opened.stdout + opened.stderr
