"""`pointex points quote`, `rules show` and `account history` with transfer fees.

The command line runs as a subprocess against the in-process query server of
test_market_queries, fed hand-built events; none of these reads needs the command server
(its target is never called). `points transfer --fee-quote` is checked for what the command
line refuses before sending anything.
"""

from __future__ import annotations

import re
from pathlib import Path

from pointex.cli.formatting import position_token
from pointex.v1 import command_service_pb2 as cmd
from pointex.v1 import common_pb2, errors_pb2
from tests import fee_events
from tests.e2e.cli_runner import EXIT_USAGE, Run, field, run_cli, run_reads
from tests.fee_events import FeeTransfer
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import ACME_TOKEN, OTHER_TOKEN, Served
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served

FEE = fee_events.transfer_fee(2, 15, "fees")


async def _pointex(tmp_path: Path, served: Served, token: str, *args: str) -> Run:
    """Run `pointex args...` against the served query server with `token`."""
    return await run_reads(tmp_path, served.target, token, *args)


async def test_points_quote_prints_the_fee_its_version_and_the_total(
    tmp_path: Path, served: Served
) -> None:
    """Text: fee, fee account, total, schedule version and how to hold a transfer to it; JSON."""
    log = Log()
    member = new_id("a")
    await served.feed([log.opened("fees", "acme", kind=2), log.opened(member, "acme")])
    at = position_token(await served.feed([fee_events.rules_set(log, FEE)]))
    args = ("points", "quote", "--from", member, "--amount", "1000", "--after", at)
    text = await _pointex(tmp_path, served, ACME_TOKEN, *args)
    assert text.code == 0, text
    figures = [field(text, name) for name in ("points", "fee", "fee account", "total")]
    assert figures == ["1,000", "17", "fees", "1,017"]
    assert field(text, "schedule version") == "1"
    assert f"points transfer {member} TO 1000 --fee-quote 17:1" in text.stdout
    as_json = (await _pointex(tmp_path, served, ACME_TOKEN, *args, "--json")).json()
    assert as_json["quote"] == {"fee_points": "17", "schedule_version": "1"}
    assert (as_json["fee_account_id"], as_json["total_points"]) == ("fees", "1017")
    refused = await _pointex(tmp_path, served, OTHER_TOKEN, *args)
    assert refused.code == 1, refused
    assert refused.stderr.startswith("error: PERMISSION_DENIED NOT_OWNER"), refused


async def test_rules_show_prints_the_transfer_fee_and_its_schedule_version(
    tmp_path: Path, served: Served
) -> None:
    """No fee: `-` at version 0; a fee: flat + per mille and its account, at its version."""
    log = Log()
    at = position_token(await served.feed([log.opened("fees", "acme", kind=2)]))
    before = await _pointex(tmp_path, served, ACME_TOKEN, "rules", "show", "--after", at)
    assert (field(before, "transfer fee"), field(before, "fee schedule version")) == ("-", "0")
    at = position_token(await served.feed([fee_events.rules_set(log, FEE)]))
    after = await _pointex(tmp_path, served, ACME_TOKEN, "rules", "show", "--after", at)
    assert field(after, "transfer fee") == "2 + 15‰ (rounded up) → fees"
    assert field(after, "fee schedule version") == "1"
    shown = await _pointex(tmp_path, served, ACME_TOKEN, "rules", "show", "--after", at, "--json")
    assert shown.json()["fee_schedule_version"] == "1"
    rules = shown.json()["rules"]
    assert isinstance(rules, dict)
    assert rules["transfer_fee"] == {
        "flat_points": "2",
        "per_mille": "15",
        "fee_account_id": "fees",
    }


async def test_account_history_has_a_fee_column(tmp_path: Path, served: Served) -> None:
    """The TRANSFER_OUT of a transfer paying 4 shows -104 and a fee of 4; others no fee."""
    log = Log()
    member, other = new_id("a"), new_id("b")
    await served.feed(
        [
            log.opened("m1", "acme", kind=2),
            log.opened("fees", "acme", kind=2),
            log.opened(member, "acme"),
            log.opened(other, "other"),
            log.minted("m1", 500, after=500),
            *log.transfer("m1", member, 500, 0, 500),
            fee_events.rules_set(log, FEE),
        ]
    )
    gift = FeeTransfer(member, other, "fees", amount=100, fee=4)
    at = position_token(
        await served.feed(
            fee_events.one_unit(log, gift, source_after=396, target_after=100, fee_after=4)
        )
    )
    history = await _pointex(
        tmp_path, served, ACME_TOKEN, "account", "history", member, "--after", at
    )
    assert history.code == 0, history
    rows = {
        cells[1]: cells
        for line in history.stdout.splitlines()
        if len(cells := [c.strip() for c in re.split("[│┃]", line)[1:-1]]) > 1
    }
    assert rows["kind"][8:10] == ["fee", "other"]
    assert rows["TRANSFER_OUT"][2] == "-104"
    assert rows["TRANSFER_OUT"][8:10] == ["4", other]
    assert rows["TRANSFER_IN"][8] == ""


async def test_a_malformed_fee_quote_is_a_usage_error_and_sends_nothing(tmp_path: Path) -> None:
    """`--fee-quote` takes FEE:VERSION, whole numbers: anything else exits 2 before any call."""
    for bad in ("4", "4:", ":1", "-1:2", "4:1.5", "four:1"):
        args = ("points", "transfer", "a", "b", "10", f"--fee-quote={bad}", "--token", "t")
        run = await run_cli(tmp_path, *args)
        assert run.code == EXIT_USAGE, (bad, run)
        assert "expected FEE:VERSION" in run.stderr, (bad, run)
        assert "Traceback" not in run.stderr


def test_a_transfer_line_names_the_fee_and_a_refused_fee() -> None:
    """No fee: as before; a fee: `fee N`; a refused fee: returned, with the reason."""
    from pointex.cli.app import build_parser  # noqa: PLC0415 - needs the cli extra.
    from pointex.cli.points import _transferred  # noqa: PLC0415 - the line itself.

    args = build_parser().parse_args(["points", "transfer", "a", "b", "250", "--fee-quote=3:1"])
    assert args.fee_quote == common_pb2.FeeQuote(fee_points=3, schedule_version=1)
    replies = {
        "plain": cmd.TransferPointsResponse(transfer_id="t1", from_available_points=250),
        "paid": cmd.TransferPointsResponse(
            transfer_id="t1", from_available_points=247, fee_points=3
        ),
        "refused": cmd.TransferPointsResponse(
            transfer_id="t1",
            from_available_points=250,
            fee_points=3,
            fee_refused_reason=errors_pb2.ERROR_REASON_ACCOUNT_CLOSED,
        ),
    }
    lines = {name: _transferred(args, reply) for name, reply in replies.items()}
    assert lines == {
        "plain": "transferred 250 points a → b: transfer t1, sender available 250",
        "paid": "transferred 250 points a → b: transfer t1, fee 3, sender available 247",
        "refused": "transferred 250 points a → b: transfer t1, fee 3 returned (the fee account "
        "refused it: ACCOUNT_CLOSED), sender available 250",
    }
