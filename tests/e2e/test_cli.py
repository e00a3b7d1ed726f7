"""The `pointex` command line end to end: the real entry point against real servers.

Every command runs `python -m pointex.cli` as a subprocess (what the `pointex` console script
runs), in a scratch directory and without POINTEX_TOKEN, so only the options given count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.cli_runner import (
    COMMAND_TIMEOUT_S,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Cli,
    Run,
    run_cli,
    start_cli,
)
from tests.e2e.conftest import cluster_mode

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# How long a test waits for the command server to activate points issued pending 2 s.
ACTIVATION_WAIT_S = 15


def ids() -> tuple[str, str, str]:
    """Return random ids for a merchant and two members of partner acme."""
    suffix = uuid.uuid4().hex[:8]
    return f"acme:shop-{suffix}", f"acme:alice-{suffix}", f"acme:bob-{suffix}"


async def open_funded(cli: Cli) -> tuple[str, str, str]:
    """Open acme's merchant (minted 1,000 points) and two members; return their ids."""
    shop, alice, bob = ids()
    await cli.ok("account", "open", shop, "--kind", "merchant", "--owner", "acme")
    for member in (alice, bob):
        await cli.ok("account", "open", member, "--kind", "member", "--owner", "acme")
    await cli.ok("points", "mint", shop, "1000", "--memo", "funding")
    return shop, alice, bob


async def test_points_move_and_accounts_show_as_table_and_json(cli: Cli) -> None:
    """Open, mint, issue and transfer; the accounts read back (after the position) agree."""
    shop, alice, bob = await open_funded(cli)
    acme = cli.acting_as("acme")
    issued = await acme.ok("points", "issue", shop, alice, "300", "--reason", "welcome")
    assert "issued 300 points" in issued.stdout
    assert "position " in issued.stdout
    moved = await acme("points", "transfer", alice, bob, "120", "--json")
    assert moved.code == 0, moved
    reply = moved.json()
    assert reply["from_available_points"] == "180"
    position = reply["position"]
    assert isinstance(position, str)
    assert len(position) == 18  # A format-1 token: 9 bytes in hex.

    table = await cli.ok("account", "get", bob, "--after", position)
    assert bob in table.stdout
    assert "MEMBER" in table.stdout
    assert "OPEN" in table.stdout
    assert "│ available │ 120" in table.stdout
    as_json = (await cli.ok("account", "get", alice, "--after", position, "--json")).json()
    account = as_json["account"]
    assert isinstance(account, dict)
    assert account["available_points"] == "180"
    assert account["status"] == "ACCOUNT_STATUS_OPEN"

    history = await cli.ok("account", "history", bob, "--after", position)
    assert "TRANSFER_IN" in history.stdout
    assert alice in history.stdout
    listing = await cli.ok("account", "list", "--owner", "acme", "--after", position)
    for account_id in (shop, alice, bob):
        assert account_id in listing.stdout
    assert listing.stderr == ""  # Progress shows only on a terminal.

    redeemed = await acme.ok("points", "redeem", bob, shop, "20", "--reason", "coffee")
    assert f"redeemed 20 points {bob} → {shop}" in redeemed.stdout
    assert "member available 100" in redeemed.stdout


async def test_an_issue_is_reversed_once_by_the_id_it_printed_and_a_redemption_too(
    cli: Cli,
) -> None:
    """Issue 300, take 100 back by the printed id; again: refused; a redemption is given back."""
    shop, alice, _bob = await open_funded(cli)
    acme = cli.acting_as("acme")
    issued = await acme.ok("points", "issue", shop, alice, "300", "--reason", "order 8812")
    found = re.search(r": transfer (\S+), merchant available", issued.stdout)
    assert found is not None, issued.stdout
    issue_id = found[1]
    taken = await acme.ok("points", "reverse-issue", issue_id, "100", "--reason", "returned")
    assert f"reversed 100 points of issue {issue_id}, member → merchant: transfer " in taken.stdout
    assert "member available 200" in taken.stdout
    assert "position " in taken.stdout

    again = await acme("points", "reverse-issue", issue_id, "50")
    assert again.code == EXIT_REFUSED, again
    assert again.stdout == ""
    assert again.stderr.startswith("error: FAILED_PRECONDITION TRANSFER_ALREADY_REVERSED")
    assert f"transfer_id={issue_id}" in again.stderr

    redeemed = (await acme.ok("points", "redeem", alice, shop, "50", "--json")).json()
    assert redeemed["member_available_points"] == "150"
    redeem_id = redeemed["transfer_id"]
    assert isinstance(redeem_id, str)
    refund = (await acme.ok("points", "reverse-redeem", redeem_id, "50", "--json")).json()
    assert refund["merchant_available_points"] == "800"
    assert refund["reversal_transfer_id"] not in ("", redeem_id)
    assert isinstance(refund["request_id"], str)
    position = refund["position"]
    assert isinstance(position, str)
    history = await cli.ok("account", "history", alice, "--after", position)
    assert "REVERSE_ISSUE_OUT" in history.stdout
    assert "REVERSE_REDEEM_IN" in history.stdout
    account = (await cli.ok("account", "get", alice, "--after", position, "--json")).json()
    assert isinstance(account["account"], dict)
    assert account["account"]["available_points"] == "200"


def cells(table: str, key: str) -> list[str]:
    """Return the cells of the one row (or header: heavy rules) of a table that has `key`."""
    (row,) = [line for line in table.splitlines() if key in line]
    return [cell.strip() for cell in re.split("[│┃]", row)[1:-1]]


async def test_an_issue_pending_a_few_seconds_shows_as_pending_then_activates(cli: Cli) -> None:
    """Issue 300 with `--activates-at +6s`: pending 300, then available 300; both in history."""
    shop, alice, _bob = await open_funded(cli)
    acme = cli.acting_as("acme")
    issued = await acme.ok("points", "issue", shop, alice, "300", "--activates-at", "+6s")
    found = re.search(
        r"→ \S+, pending until (\S+): transfer \S+, merchant available 700", issued.stdout
    )
    assert found is not None, issued.stdout
    activates_at = datetime.fromisoformat(found[1])
    assert activates_at.tzinfo is not None
    position = issued.stdout.split("position ")[1].split()[0]
    # One command run after the issue, within the 5 to 6 s of `+6s`: still pending.
    table = await cli.ok("account", "get", alice, "--after", position)
    read_at = datetime.now(UTC)
    assert "│ pending   │ 300" in table.stdout, (read_at, activates_at, table.stdout)
    assert "│ available │ 0" in table.stdout

    account: dict[str, object] = {}
    as_of: object = None
    async with asyncio.timeout(ACTIVATION_WAIT_S):
        while account.get("pending_points") != "0":
            await asyncio.sleep(0.2)
            reply = (await cli.ok("account", "get", alice, "--json")).json()
            assert isinstance(reply["account"], dict)
            account = reply["account"]
            as_of = reply["as_of"]
    assert account["available_points"] == "300"
    assert isinstance(as_of, str)

    history = await cli.ok("account", "history", alice, "--after", as_of)
    header = cells(history.stdout, "recorded")
    assert header[1:8] == [
        "kind", "available Δ", "held Δ", "pending Δ", "available", "held", "pending",
    ]  # fmt: skip
    assert cells(history.stdout, "ISSUE_PENDING")[1:8] == [
        "ISSUE_PENDING", "", "", "+300", "0", "0", "300",
    ]  # fmt: skip
    activated = cells(history.stdout, "POINTS_ACTIVATED")
    assert activated[1:8] == ["POINTS_ACTIVATED", "+300", "", "-300", "300", "0", "0"]
    # Recorded to the second, and WHEN is a whole second: not before its time.
    assert datetime.fromisoformat(activated[0]) >= activates_at


async def test_a_pending_issue_is_listed_and_reverse_issue_cancels_it(cli: Cli) -> None:
    """Issue 300 pending a day: listed as pending, not spendable; a reversal takes it back."""
    shop, alice, bob = await open_funded(cli)
    acme = cli.acting_as("acme")
    issued = await acme.ok("points", "issue", shop, alice, "300", "--activates-at", "+1d")
    found = re.search(r", pending until \S+: transfer (\S+),", issued.stdout)
    assert found is not None, issued.stdout
    position = issued.stdout.split("position ")[1].split()[0]
    listing = await cli.ok("account", "list", "--owner", "acme", "--after", position)
    assert cells(listing.stdout, "available")[5:8] == ["available", "held", "pending"]
    assert cells(listing.stdout, alice)[5:8] == ["0", "0", "300"]
    spend = await acme("points", "transfer", alice, bob, "1")
    assert spend.code == EXIT_REFUSED, spend
    assert spend.stderr.startswith("error: FAILED_PRECONDITION INSUFFICIENT_POINTS")

    taken = await acme.ok("points", "reverse-issue", found[1], "300", "--json")
    after = taken.json()["position"]
    assert isinstance(after, str)
    account = (await cli.ok("account", "get", alice, "--after", after, "--json")).json()
    assert isinstance(account["account"], dict)
    assert (account["account"]["available_points"], account["account"]["pending_points"]) == (
        "0",
        "0",
    )
    history = await cli.ok("account", "history", alice, "--after", after)
    assert cells(history.stdout, "REVERSE_ISSUE_OUT")[1:8] == [
        "REVERSE_ISSUE_OUT", "", "", "-300", "0", "0", "0",
    ]  # fmt: skip


async def test_a_refused_command_prints_code_and_reason_and_exits_1(cli: Cli) -> None:
    """Too many points: one error line with the code and the reason, exit 1, nothing printed."""
    shop, alice, bob = await open_funded(cli)
    await cli.ok("points", "issue", shop, alice, "10")
    refused = await cli("points", "transfer", alice, bob, "11")
    assert refused.code == EXIT_REFUSED, refused
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: FAILED_PRECONDITION INSUFFICIENT_POINTS: ")

    missing = await cli("account", "get", "acme:nobody")
    assert missing.code == EXIT_REFUSED
    assert missing.stderr.startswith("error: NOT_FOUND ACCOUNT_NOT_FOUND")
    forbidden = await cli.acting_as("acme")("points", "mint", shop, "5")
    assert forbidden.code == EXIT_REFUSED
    assert "PERMISSION_DENIED ROLE_FORBIDDEN" in forbidden.stderr


async def test_a_request_id_given_twice_applies_the_command_once(cli: Cli) -> None:
    """The same --request-id returns the original reply: one mint, one position."""
    shop, _alice, _bob = await open_funded(cli)
    request_id = str(uuid.uuid4())
    first = (await cli.ok("points", "mint", shop, "7", "--request-id", request_id, "--json")).json()
    again = (await cli.ok("points", "mint", shop, "7", "--request-id", request_id, "--json")).json()
    assert first == again
    assert first["available_points"] == "1007"
    assert first["request_id"] == request_id


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """A wrong command line exits 2 before calling anything."""
    assert (await run_cli(tmp_path, "points", "mint", "acme:shop")).code == EXIT_USAGE
    assert (await run_cli(tmp_path, "points", "mint", "acme:shop", "-5")).code == EXIT_USAGE
    bad_position = await run_cli(tmp_path, "account", "get", "a", "--after", "zz", "--token", "t")
    assert bad_position.code == EXIT_USAGE
    no_token = await run_cli(tmp_path, "account", "get", "a")
    assert no_token.code == EXIT_USAGE
    assert "no token" in no_token.stderr


async def test_a_malformed_or_zoneless_activation_time_is_a_usage_error(tmp_path: Path) -> None:
    """`--activates-at` that is not a time, or a time without a zone: exit 2, no traceback."""
    refusals = {
        "soon": "is not a time",
        "+2x": "is not a time",
        "-2h": "is not a time",
        "+99999999999d": "too far ahead",
        "2026-12-31T00:00:00": "has no time zone",
        "2026-12-31": "has no time zone",
    }
    for when, says in refusals.items():
        # With `=`: argparse would read a separate `-2h` as an option, not as the value.
        args = ("points", "issue", "acme:shop", "acme:alice", "5", f"--activates-at={when}")
        run = await run_cli(tmp_path, *args, "--token", "t")
        assert run.code == EXIT_USAGE, run
        assert "argument --activates-at: " in run.stderr, run
        assert says in run.stderr, run
        assert "Traceback" not in run.stderr


async def test_an_unreachable_server_exits_3(tmp_path: Path) -> None:
    """Nothing listens on the port: after its retries the command exits 3 with UNAVAILABLE."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    common = ("--token", "t", "--retries", "1", "--command-target", closed)
    run = await run_cli(tmp_path, "points", "mint", "acme:shop", "5", *common)
    assert run.code == EXIT_UNREACHABLE, run
    assert "error: UNAVAILABLE" in run.stderr
    assert "--request-id" in run.stderr  # The outcome is unknown: how to find it out.
    status = await run_cli(tmp_path, "status", *common, "--query-target", closed)
    assert status.code == EXIT_UNREACHABLE
    assert "UNREACHABLE" in status.stdout


async def test_audit_and_status_of_a_healthy_system_exit_0(cli: Cli) -> None:
    """After some movements the audit finds no violation and both servers are SERVING."""
    shop, alice, _bob = await open_funded(cli)
    issued = (await cli.ok("points", "issue", shop, alice, "40", "--json")).json()
    position = issued["position"]
    assert isinstance(position, str)
    audit = await cli.ok("audit", "--after", position)
    assert "OK" in audit.stdout
    as_json = (await cli.ok("audit", "--after", position, "--json")).json()
    assert as_json["ok"] is True
    assert as_json["minted_points"] == "1000"
    status = await cli.ok("status")
    assert status.stdout.count("SERVING") == 2
    assert "connected" in status.stdout
    as_json = (await cli.ok("status", "--json")).json()
    if cluster_mode():  # Every slice range held by the one holder of the cluster.
        assert "0-63" in status.stdout, status
        listed = as_json["slice_leases"]
        assert isinstance(listed, dict)
        assert len(listed["leases"]) == 64
        assert {lease["owner_id"] for lease in listed["leases"]} == {listed["answered_by"]}
    else:
        assert "runs alone" in status.stdout  # No slice-range lease: one command server.
        assert as_json["slice_leases"] == {"leases": [], "answered_by": ""}


async def test_watch_prints_notifications_and_resumes_from_its_cursor(cli: Cli) -> None:
    """`watch --limit` prints notifications as JSON lines; the saved cursor resumes after them."""
    shop, alice, _bob = await open_funded(cli)
    cursor_file = cli.cwd / "cursor"
    first = await cli.ok(
        "watch", "--from-beginning", "--account", shop, "--limit", "1", "--json",
        "--cursor-file", str(cursor_file),
    )  # fmt: skip
    (minted,) = [json.loads(line) for line in first.stdout.splitlines()]
    assert minted["kind"] == "NOTIFICATION_KIND_POINTS_MINTED"
    assert minted["account_id"] == shop
    assert cursor_file.read_text().strip() == minted["cursor"]

    await cli.ok("points", "issue", shop, alice, "25")
    resumed = await cli.ok(
        "watch", "--account", shop, "--limit", "1", "--cursor-file", str(cursor_file)
    )
    assert "POINTS_SENT" in resumed.stdout
    assert "POINTS_MINTED" not in resumed.stdout
    assert "resume with: pointex watch --cursor " in resumed.stderr


async def test_watch_stops_cleanly_on_a_signal(cli: Cli) -> None:
    """A running `watch` prints a new notification as it happens and exits 0 on SIGINT."""
    shop, _alice, _bob = await open_funded(cli)
    # From the beginning and filtered to burns: the burn shows however fast the stream starts.
    watcher = await start_cli(
        cli.cwd, "watch", "--account", shop, "--kind", "points_burned", "--from-beginning",
        *cli.options,
    )  # fmt: skip
    try:
        await cli.ok("points", "burn", shop, "3", "--memo", "expired")
        assert watcher.stdout is not None
        line = await asyncio.wait_for(watcher.stdout.readline(), COMMAND_TIMEOUT_S)
        assert b"POINTS_BURNED" in line
        assert shop.encode() in line
        watcher.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(watcher.communicate(), COMMAND_TIMEOUT_S)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    assert watcher.returncode == 0, stderr
    assert b"resume with: pointex watch --cursor " in stderr


async def test_market_commands_show_orders_books_and_markets(cli: Cli) -> None:
    """A resting SELL order shows in the book and in the order list; cancelling releases it."""
    shop, alice, _bob = await open_funded(cli)
    await cli.ok("points", "issue", shop, alice, "50")
    placed = (await cli.ok("order", "place", alice, "sell", "20", "125", "--json")).json()
    order = placed["order"]
    assert isinstance(order, dict)
    order_id = order["order_id"]
    position = placed["position"]
    assert isinstance(order_id, str)
    assert isinstance(position, str)
    book = await cli.ok("book", "PTS-CNY", "--after", position)
    assert "SELL" in book.stdout
    assert "1.25 CNY" in book.stdout
    orders = await cli.ok("order", "list", "--account", alice, "--after", position)
    assert order_id in orders.stdout
    trades = (
        await cli.ok("trade", "list", "--account", alice, "--after", position, "--json")
    ).json()
    assert trades["trades"] == []  # Nothing matched the order yet.
    assert isinstance(trades["as_of"], str)
    assert "PTS-CNY" in (await cli.ok("markets")).stdout
    cancelled = await cli.ok("order", "cancel", order_id)
    assert "released 20 points" in cancelled.stdout


async def test_a_tier_is_set_shown_and_cleared(cli: Cli) -> None:
    """The owning partner sets a tier; get, list and JSON show it; again is no change; --clear."""
    _shop, alice, _bob = await open_funded(cli)
    acme = cli.acting_as("acme")
    set_gold = await acme.ok("account", "tier", alice, "gold")
    assert f"{alice} tier set to gold" in set_gold.stdout
    assert "position " in set_gold.stdout
    again = (await acme.ok("account", "tier", alice, "gold", "--json")).json()
    assert again["changed"] is False
    position = again["position"]
    assert isinstance(position, str)

    table = await cli.ok("account", "get", alice, "--after", position)
    assert "│ tier      │ gold" in table.stdout
    listing = await cli.ok("account", "list", "--owner", "acme", "--after", position)
    (row,) = [line for line in listing.stdout.splitlines() if alice in line]
    assert "│ gold │" in row

    cleared = await acme.ok("account", "tier", alice, "--clear", "--json")
    assert cleared.json()["changed"] is True
    after = cleared.json()["position"]
    assert isinstance(after, str)
    account = (await cli.ok("account", "get", alice, "--after", after, "--json")).json()
    assert isinstance(account["account"], dict)
    assert account["account"]["tier"] == ""
    empty = await acme("account", "tier", alice, "")
    assert empty.code == EXIT_USAGE
    assert "use --clear" in empty.stderr


def _limits_of(run: Run) -> list[dict[str, object]]:
    """Return the limits of a `rules show --json` run."""
    rules = run.json()["rules"]
    assert isinstance(rules, dict)
    limits = rules["limits"]
    assert isinstance(limits, list)
    return limits


async def test_rules_set_from_a_file_show_and_a_stale_version_is_refused(cli: Cli) -> None:
    """Set the sample rules at version 0, show them; a set from version 0 again is refused."""
    empty = await cli.ok("rules", "show")
    assert re.search(r"│ version\s+│ 0 ", empty.stdout), empty.stdout
    assert re.search(r"│ reversal debt max\s+│ -", empty.stdout), empty.stdout
    assert re.search(r"│ transfer fee\s+│ - ", empty.stdout), empty.stdout
    assert re.search(r"│ expiry\s+│ - ", empty.stdout), empty.stdout
    assert "no limits" in empty.stdout
    sample = str(EXAMPLES / "program_rules.json")
    first = await cli.ok("rules", "set", "--file", sample, "--expected-version", "0")
    fee = "transfer fee 1 + 5‰ (rounded up) → program-fees"
    expiry = "points lapse 365 days after they are earned, told 30 days before"
    assert f"program rules set: version 1, 3 limits, {fee}, {expiry}" in first.stdout
    position = first.stdout.split("position ")[1].split()[0]

    table = await cli.ok("rules", "show", "--after", position)
    assert re.search(r"│ version\s+│ 1 ", table.stdout), table.stdout
    assert re.search(r"│ transfer fee\s+│ 1 \+ 5‰ \(rounded up\) → program-fees", table.stdout)
    assert re.search(r"│ fee schedule version │ 1 ", table.stdout), table.stdout
    assert re.search(rf"│ expiry\s+│ {expiry}", table.stdout), table.stdout
    rows = [line for line in table.stdout.splitlines() if "TRANSFER" in line or "BUY" in line]
    # operation, account kind, tier, min, max, step, daily max, yearly max.
    assert [[cell.strip() for cell in row.split("│")[1:-1]] for row in rows] == [
        ["TRANSFER", "MEMBER", "any", "-", "25,000", "-", "-", "100,000"],
        ["TRANSFER", "MEMBER", "gold", "-", "100,000", "-", "-", "400,000"],
        ["MARKET_BUY", "any", "any", "-", "-", "1,000", "-", "200,000"],
    ]
    as_json = await cli.ok("rules", "show", "--after", position, "--json")
    assert as_json.json()["version"] == "1"
    limits = _limits_of(as_json)
    assert [limit["max_points"] for limit in limits] == ["25000", "100000", "0"]
    assert [limit["yearly_max_points"] for limit in limits] == ["100000", "400000", "200000"]
    assert limits[2]["operation"] == "LIMITED_OPERATION_MARKET_BUY"
    shown_rules = as_json.json()["rules"]
    assert isinstance(shown_rules, dict)
    assert shown_rules["expiry"] == {"lifetime": "31536000s", "notice": "2592000s"}

    # The `rules` of `show --json` are a rules file as they are; short names are accepted.
    shown = cli.cwd / "shown.json"
    shown.write_text(json.dumps(as_json.json()["rules"]))
    stale = await cli("rules", "set", "--file", str(shown), "--expected-version", "0")
    assert stale.code == EXIT_REFUSED, stale
    assert stale.stdout == ""
    assert stale.stderr.startswith("error: FAILED_PRECONDITION PROGRAM_RULES_CHANGED")
    assert "version=1" in stale.stderr
    short = cli.cwd / "short.json"
    short.write_text(
        '{"limits": [{"operation": "redeem", "account_kind": "member", "stepPoints": 5}]}'
    )
    second = await cli.ok("rules", "set", "--file", str(short), "--expected-version", "1", "--json")
    assert second.json()["version"] == "2"
    after = second.json()["position"]
    assert isinstance(after, str)
    shown_after = await cli.ok("rules", "show", "--after", after, "--json")
    # The file sets no fee: the fee is gone, a change of the fee schedule at version 2.
    assert shown_after.json()["fee_schedule_version"] == "2"
    (redeem,) = _limits_of(shown_after)
    assert (redeem["operation"], redeem["account_kind"]) == (
        "LIMITED_OPERATION_REDEEM",
        "ACCOUNT_KIND_MEMBER",
    )
    forbidden = await cli.acting_as("acme")(
        "rules", "set", "--file", sample, "--expected-version", "2"
    )
    assert forbidden.code == EXIT_REFUSED
    assert "PERMISSION_DENIED ROLE_FORBIDDEN" in forbidden.stderr


async def test_points_quote_prints_the_fee_of_the_rules_in_force(cli: Cli) -> None:
    """The sample rules' fee (1 + 5 per mille) through both servers: 250 points pay 3."""
    shop, alice, _bob = await open_funded(cli)
    acme = cli.acting_as("acme")
    issued = (await acme.ok("points", "issue", shop, alice, "300", "--json")).json()
    at = issued["position"]
    assert isinstance(at, str)
    ask = ("points", "quote", "--from", alice, "--amount", "250")
    free = (await acme.ok(*ask, "--after", at, "--json")).json()
    assert (free["quote"], free["total_points"]) == (
        {"fee_points": "0", "schedule_version": "0"},
        "250",
    )
    sample = str(EXAMPLES / "program_rules.json")
    rules = await cli.ok("rules", "set", "--file", sample, "--expected-version", "0", "--json")
    after = rules.json()["position"]
    assert isinstance(after, str)
    quote = await acme.ok(*ask, "--after", after)
    assert re.search(r"│ fee\s+│ 3 ", quote.stdout), quote.stdout
    assert re.search(r"│ total\s+│ 253 ", quote.stdout), quote.stdout
    assert re.search(r"│ fee account\s+│ program-fees ", quote.stdout), quote.stdout
    assert f"points transfer {alice} TO 250 --fee-quote 3:1" in quote.stdout
    others = await cli.acting_as("other")(*ask, "--after", after)
    assert others.code == EXIT_REFUSED, others
    assert others.stderr.startswith("error: PERMISSION_DENIED NOT_OWNER"), others


async def test_a_rules_file_that_does_not_parse_is_a_usage_error(tmp_path: Path) -> None:
    """Not JSON, not an object, an unknown field or operation, no file: exit 2, no traceback."""
    files = {
        "not-json.json": ("{limits: []", "not JSON"),
        "list.json": ("[]", "expected a JSON object"),
        "field.json": ('{"limit": []}', 'has no field named "limit"'),
        "operation.json": ('{"limits": [{"operation": "teleport"}]}', "Invalid enum value"),
        "missing.json": (None, "cannot read missing.json"),
    }
    for name, (content, says) in files.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        args = ("rules", "set", "--file", name, "--expected-version", "0", "--token", "t")
        run = await run_cli(tmp_path, *args)
        assert run.code == EXIT_USAGE, run
        assert run.stderr.startswith("error: "), run
        assert says in run.stderr, run
        assert "Traceback" not in run.stderr


async def test_without_the_cli_extra_pointex_says_how_to_install_it(tmp_path: Path) -> None:
    """With `rich` missing, `pointex` names the extra to install instead of a traceback."""
    hide_rich = (
        "import sys; sys.modules['rich'] = None; "
        "from pointex.cli.main import main; sys.exit(main(['status']))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", hide_rich, stderr=asyncio.subprocess.PIPE, cwd=tmp_path
    )
    _, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    assert process.returncode == EXIT_USAGE
    assert b"pip install 'pointex-client[cli]'" in stderr
    assert b"Traceback" not in stderr


def test_every_command_has_help() -> None:
    """Every subcommand of the tree, down to the leaves, has a help text."""
    from pointex.cli.app import build_parser  # noqa: PLC0415 - needs the cli extra.

    pending: list[argparse.ArgumentParser] = [build_parser()]
    leaves = 0
    while pending:
        parser = pending.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, choice.dest
                pending.extend(action.choices.values())
        leaves += parser.get_default("handler") is not None
    # account 8, points 9, order 4, trade 3, book, markets, watch, audit, status, rules 2,
    # admin token 3
    assert leaves == 35


async def test_trade_refund_names_why_a_trade_cannot_be_refunded(cli: Cli) -> None:
    """A trade never paid (pending, or cancelled already), one unknown: refused by name, exit 1."""
    shop, alice, bob = await open_funded(cli)
    await cli.ok("points", "issue", shop, alice, "50")
    await cli.ok("order", "place", alice, "sell", "5", "100")
    bought = (await cli.ok("order", "place", bob, "buy", "5", "100", "--json")).json()
    trades = bought["trades"]
    assert isinstance(trades, list)
    trade_id = trades[0]["trade_id"]
    pending = await cli.acting_as("acme")("trade", "refund", trade_id)
    assert pending.code == EXIT_REFUSED, pending
    assert pending.stderr.startswith("error: FAILED_PRECONDITION PURCHASE_NOT_REFUNDABLE")
    assert re.search(r"trade_status=(PENDING_PAYMENT|CANCELLED)\]", pending.stderr), pending
    unknown = await cli("trade", "refund", "no-such-trade")
    assert unknown.code == EXIT_REFUSED, unknown
    assert unknown.stderr.startswith("error: NOT_FOUND TRADE_NOT_FOUND")
