"""`pointex order quote`, `order place --fee-quote` and `markets` with the fee schedule version.

The command line runs as a subprocess against the in-process query server of
test_market_queries, fed the command side's market configuration; the quote needs no command
server (its target is never called). `order place --fee-quote` is checked for what it sends
and for what the command line refuses before sending anything.
"""

from __future__ import annotations

from pathlib import Path

from pointex.cli.formatting import position_token
from pointex.v1 import common_pb2
from tests.e2e.cli_runner import EXIT_USAGE, Run, field, run_cli, run_reads
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import ACME_TOKEN, OTHER_TOKEN, Served
from tests.integration.test_order_fee_read_store import PTS, configured
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served


async def _pointex(tmp_path: Path, served: Served, token: str, *args: str) -> Run:
    """Run `pointex args...` against the served query server with `token`."""
    return await run_reads(tmp_path, served.target, token, *args)


async def test_order_quote_prints_the_fee_its_version_and_how_to_place_with_it(
    tmp_path: Path, served: Served
) -> None:
    """Text: notional, schedule, fee, total, version and the place command; JSON; NOT_OWNER."""
    log = Log()
    member = new_id("a")
    at = position_token(await served.feed([log.opened(member, "acme"), configured(log, PTS)]))
    args = ("order", "quote", member, "buy", "30", "125", "--after", at)
    text = await _pointex(tmp_path, served, ACME_TOKEN, *args)
    assert text.code == 0, text
    names = ("notional", "fee schedule", "fee", "pays at most", "schedule version")
    assert [field(text, name) for name in names] == [
        "37.50 CNY",
        "100 bps + 0.01 CNY",
        "0.39 CNY",
        "37.89 CNY",
        "1",
    ]
    assert f"order place {member} buy 30 125 --market PTS-CNY --fee-quote 39:1" in text.stdout
    sell = await _pointex(
        tmp_path, served, ACME_TOKEN, "order", "quote", member, "sell", "30", "125"
    )
    assert field(sell, "receives at least") == "37.31 CNY"
    as_json = (await _pointex(tmp_path, served, ACME_TOKEN, *args, "--json")).json()
    assert as_json["quote"] == {"fee_minor": "39", "schedule_version": "1"}
    assert (as_json["notional_minor"], as_json["total_minor"]) == ("3750", "3789")
    refused = await _pointex(tmp_path, served, OTHER_TOKEN, *args)
    assert refused.code == 1, refused
    assert refused.stderr.startswith("error: PERMISSION_DENIED NOT_OWNER"), refused


async def test_markets_shows_each_markets_fee_schedule_version(
    tmp_path: Path, served: Served
) -> None:
    """The markets table has a `fee version` column; JSON has `fee_schedule_version`."""
    at = position_token(await served.feed([configured(Log(), PTS)]))
    shown = await _pointex(tmp_path, served, ACME_TOKEN, "markets", "--after", at, "--json")
    assert shown.code == 0, shown
    markets = shown.json()["markets"]
    assert isinstance(markets, list)
    (market,) = markets
    assert isinstance(market, dict)
    assert (market["market_id"], market["fee_schedule_version"]) == ("PTS-CNY", "1")
    table = await _pointex(tmp_path, served, ACME_TOKEN, "markets", "--after", at)
    assert "fee version" in table.stdout


async def test_a_malformed_order_fee_quote_is_a_usage_error_and_sends_nothing(
    tmp_path: Path,
) -> None:
    """`--fee-quote` takes FEE:VERSION, whole numbers: anything else exits 2 before any call."""
    for bad in ("39", "39:", ":1", "-1:2", "3.9:1", "fee:1"):
        args = ("order", "place", "a", "buy", "30", "125", f"--fee-quote={bad}", "--token", "t")
        run = await run_cli(tmp_path, *args)
        assert run.code == EXIT_USAGE, (bad, run)
        assert "expected FEE:VERSION" in run.stderr, (bad, run)
        assert "Traceback" not in run.stderr


def test_order_place_sends_the_quote_it_was_given() -> None:
    """`--fee-quote 39:1` becomes PlaceOrderRequest.fee_quote; without it none is sent."""
    from pointex.cli.app import build_parser  # noqa: PLC0415 - needs the cli extra.

    parser = build_parser()
    args = parser.parse_args(["order", "place", "a", "buy", "30", "125", "--fee-quote=39:1"])
    assert args.fee_quote == common_pb2.OrderFeeQuote(fee_minor=39, schedule_version=1)
    assert parser.parse_args(["order", "place", "a", "buy", "30", "125"]).fee_quote is None
