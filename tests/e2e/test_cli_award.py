"""`pointex points award FILE.csv` end to end: checked first, resumable, once per row."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.v1 import common_pb2
from tests.e2e.cli_runner import EXIT_USAGE, Cli, start_cli
from tests.e2e.conftest import OPERATOR_TOKEN, ServerProcess

MEMBERS = 200
ROWS = 10_000
KILL_TIMEOUT_S = 60


async def _program(
    command_server: ServerProcess, query_server: ServerProcess, funding: int
) -> tuple[AsyncPointexClient, str, list[str]]:
    """Open a funded merchant and MEMBERS members; return a client, the merchant, the members."""
    client = AsyncPointexClient(Targets(command_server.target, query_server.target), OPERATOR_TOKEN)
    suffix = uuid.uuid4().hex[:8]
    merchant = f"acme:shop-{suffix}"
    members = [f"acme:m{n}-{suffix}" for n in range(MEMBERS)]
    await client.open_account(merchant, "merchant", owner_partner_id="acme")
    await client.mint(merchant, funding)
    for member in members:
        await client.open_account(member, "member", owner_partner_id="acme")
    return client, merchant, members


def _write_awards(path: Path, members: list[str]) -> dict[str, int]:
    """Write ROWS awards spread over the members; return what each member must end with."""
    expected = dict.fromkeys(members, 0)
    lines = ["member,amount,reason"]
    for row in range(ROWS):
        member = members[row % len(members)]
        amount = 1 + row % 7
        expected[member] += amount
        lines.append(f"{member},{amount},order {row}")
    path.write_text("\n".join(lines) + "\n")
    return expected


async def test_an_award_killed_midway_and_run_again_awards_each_row_once(
    tmp_path: Path, cli: Cli, command_server: ServerProcess, query_server: ServerProcess
) -> None:
    """SIGKILL the first run part way; the second run completes; every row counts once."""
    funding = ROWS * 10
    client, merchant, members = await _program(command_server, query_server, funding)
    awards = tmp_path / "awards.csv"
    expected = _write_awards(awards, members)
    total = sum(expected.values())
    args = ("points", "award", str(awards), "--merchant", merchant, "--batch", "50")
    first = await start_cli(cli.cwd, *args, "--window", "1", *cli.options)
    try:
        async with asyncio.timeout(KILL_TIMEOUT_S):
            async for _ in client.notifications(account_ids=[merchant], from_beginning=True):
                if (await client.get_account(merchant)).available_points < funding:
                    break
    finally:
        first.kill()
        await first.wait()
    await asyncio.sleep(0.5)  # Let the query server apply what the killed run committed.
    spent_before = funding - (await client.get_account(merchant)).available_points
    assert 0 < spent_before < total, "the first run must be stopped part way"
    second = await cli("points", "award", str(awards), "--merchant", merchant, "--json")
    assert second.code == 0, second.stderr
    summary = json.loads(second.stdout)
    assert (summary["rows"], summary["awarded"], summary["failed"]) == (ROWS, ROWS, 0)
    after = common_pb2.Position(token=bytes.fromhex(summary["position"]))
    accounts = client.list_accounts(owner_partner_id="acme", page_size=500, min_position=after)
    balances = {
        account.account_id: account.available_points
        async for account in accounts
        if account.account_id in expected or account.account_id == merchant
    }
    await client.close()
    assert balances.pop(merchant) == funding - total
    assert balances == expected


async def test_bad_rows_are_reported_by_line_and_nothing_is_awarded(
    tmp_path: Path, cli: Cli, command_server: ServerProcess, query_server: ServerProcess
) -> None:
    """A file with bad rows names each bad line, exits 2 and awards nothing at all."""
    client, merchant, members = await _program(command_server, query_server, 1_000)
    awards = tmp_path / "bad.csv"
    awards.write_text(
        "member,amount,reason\n"
        f"{members[0]},10,ok\n"
        f"{members[1]},12.5,a fraction\n"
        f"{members[2]},5,ok\n"
        ",5,no member\n"
        f"{members[3]},5\n"
    )
    run = await cli("points", "award", str(awards), "--merchant", merchant)
    assert run.code == EXIT_USAGE
    assert "3 bad row(s), nothing awarded" in run.stderr
    assert "line 3: amount '12.5'" in run.stderr
    assert "line 5: no member" in run.stderr
    assert "line 6: 2 columns, expected 3" in run.stderr
    assert (await client.get_account(merchant)).available_points == 1_000
    await client.close()


async def test_refused_rows_are_summed_up_by_reason_and_line(
    tmp_path: Path, cli: Cli, command_server: ServerProcess, query_server: ServerProcess
) -> None:
    """Rows the server refuses are counted by reason and listed; the rest are awarded."""
    client, merchant, members = await _program(command_server, query_server, 1_000)
    awards = tmp_path / "mixed.csv"
    awards.write_text(
        f"member,amount\n{members[0]},10\nacme:nobody-{uuid.uuid4().hex[:6]},10\n{members[1]},7\n"
    )
    run = await cli("points", "award", str(awards), "--merchant", merchant, "--json")
    assert run.code == 1, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["awarded"], summary["points"], summary["failed"]) == (2, 17, 1)
    assert summary["failures_by_reason"] == {"ACCOUNT_NOT_FOUND": 1}
    assert summary["failed_rows"][0]["line"] == 3
    await client.close()
