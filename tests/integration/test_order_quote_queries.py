"""QuoteOrder and the markets' fee schedule versions over real gRPC.

As in test_fee_queries, the query servicer runs in process on port 0 and is fed feed events
through `Projector.apply_active`; the market configurations are the command side's own,
encoded by its codec. A quote is the side's fee of one full fill at the limit price, with the
market's fee schedule version; ListMarkets shows that version; a reconfiguration that keeps
the fees keeps it. Every refusal is named, and the SDK's `quote_order` returns the quote
`place_order(fee_quote=...)` sends.
"""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.client.errors import NotFound
from pointex.server import limits
from pointex.server.domain.values import FeeSchedule
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import ACME_TOKEN, Queries, Served
from tests.integration.test_order_fee_read_store import PTS, configured
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served

BUY, SELL = common_pb2.ORDER_SIDE_BUY, common_pb2.ORDER_SIDE_SELL


def _ask(
    account_id: str, side: int, quantity: int, price: int, **more: object
) -> qpb.QuoteOrderRequest:
    return qpb.QuoteOrderRequest(
        account_id=account_id,
        market_id=more.pop("market_id", "PTS-CNY"),  # type: ignore[arg-type]
        side=side,  # type: ignore[arg-type]
        quantity_points=quantity,
        limit_price_minor=price,
        **more,  # type: ignore[arg-type]
    )


async def _quote(
    queries: Queries, account_id: str, side: int, at: common_pb2.Position
) -> qpb.QuoteOrderResponse:
    """Quote 30 points at 125 (notional 37.50)."""
    reply = await queries.call("QuoteOrder", _ask(account_id, side, 30, 125, min_position=at))
    assert isinstance(reply, qpb.QuoteOrderResponse)
    return reply


def _figures(reply: qpb.QuoteOrderResponse) -> tuple[int, int, int, int, int, int]:
    """Return (fee, version, rate, fixed, notional, total) of a quote."""
    return (
        reply.quote.fee_minor,
        reply.quote.schedule_version,
        reply.schedule.rate_bps,
        reply.schedule.fixed_minor,
        reply.notional_minor,
        reply.total_minor,
    )


async def _market_versions(queries: Queries, at: common_pb2.Position) -> dict[str, int]:
    reply = await queries.call("ListMarkets", qpb.ListMarketsRequest(min_position=at))
    assert isinstance(reply, qpb.ListMarketsResponse)
    return {m.market_id: m.fee_schedule_version for m in reply.markets}


async def test_a_quote_is_the_sides_fee_under_the_schedule_in_force(served: Served) -> None:
    """BUY pays 1% (rounded up) + 0.01 on top; SELL 0.5% off; versions follow fee changes."""
    log = Log()
    member = new_id("a")
    at = await served.feed([log.opened(member, "acme"), configured(log, PTS)])
    assert await _market_versions(served.acme, at) == {"PTS-CNY": 1}
    for queries in (served.acme, served.operator):
        bought = await _quote(queries, member, BUY, at)
        assert _figures(bought) == (38 + 1, 1, 100, 1, 3750, 3789)
        assert (bought.currency, bought.as_of) == ("CNY", at)
    assert _figures(await _quote(served.acme, member, SELL, at)) == (19, 1, 50, 0, 3750, 3731)
    at = await served.feed([configured(log, dataclasses.replace(PTS, open=False))])
    assert await _market_versions(served.acme, at) == {"PTS-CNY": 1}  # Closed, fees kept.
    assert _figures(await _quote(served.acme, member, SELL, at))[:2] == (19, 1)
    at = await served.feed(
        [configured(log, dataclasses.replace(PTS, seller_fee=FeeSchedule(0, 25)))]
    )
    assert await _market_versions(served.operator, at) == {"PTS-CNY": 3}
    assert _figures(await _quote(served.acme, member, SELL, at)) == (25, 3, 0, 25, 3750, 3725)
    assert _figures(await _quote(served.acme, member, BUY, at))[:2] == (39, 3)


async def test_quote_order_refuses_what_it_must(served: Served) -> None:
    """Owners, existence, and PlaceOrder's bounds: each refusal named, as PlaceOrder names it."""
    log = Log()
    member = new_id("a")
    vast = dataclasses.replace(
        PTS,
        market_id="VAST-CNY",
        max_price_minor=limits.price_minor_max,
        max_quantity_points=limits.points_amount_max,
    )
    await served.feed([log.opened(member, "acme"), configured(log, PTS), configured(log, vast)])
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    refusals = [
        (served.other, _ask(member, BUY, 5, 100), grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
        (served.acme, _ask("nobody", BUY, 5, 100), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"),
        (
            served.acme,
            _ask(member, BUY, 5, 100, market_id="NONE-CNY"),
            grpc.StatusCode.NOT_FOUND,
            "MARKET_NOT_FOUND",
        ),
        (served.acme, _ask(member, BUY, 0, 100), invalid, "AMOUNT_NOT_POSITIVE"),
        (served.acme, _ask(member, BUY, 10**9 + 1, 100), invalid, "AMOUNT_TOO_LARGE"),
        (served.acme, _ask(member, BUY, 5, 0), invalid, "PRICE_NOT_POSITIVE"),
        (served.acme, _ask(member, BUY, 5, 10_001), invalid, "AMOUNT_TOO_LARGE"),
        (
            served.acme,
            _ask(
                member, SELL, limits.points_amount_max, limits.price_minor_max, market_id="VAST-CNY"
            ),
            invalid,
            "NOTIONAL_OVERFLOW",
        ),
        (served.acme, _ask(member, 0, 5, 100), invalid, "INVALID_FIELD"),
        (served.acme, _ask("x" * 65, BUY, 5, 100), invalid, "FIELD_TOO_LONG"),
    ]
    for queries, request, code, reason in refusals:
        assert await queries.error("QuoteOrder", request) == (code, reason), request
    # At the market's own bounds the quote is answered.
    reply = await served.acme.call("QuoteOrder", _ask(member, BUY, 10**9, 10_000))
    assert isinstance(reply, qpb.QuoteOrderResponse)
    assert reply.notional_minor == 10**13


async def test_the_sdk_quotes_an_order_for_place_order(served: Served) -> None:
    """quote_order's reply carries the quote place_order sends; an unknown market is NotFound."""
    log = Log()
    member = new_id("a")
    at = await served.feed([log.opened(member, "acme"), configured(log, PTS)])
    targets = Targets(command="127.0.0.1:9", query=served.target)
    async with AsyncPointexClient(targets, ACME_TOKEN) as client:
        reply = await client.quote_order(member, "sell", 30, 125, min_position=at)
        assert reply.quote == common_pb2.OrderFeeQuote(fee_minor=19, schedule_version=1)
        markets = await client.list_markets(min_position=at)
        assert [(m.market_id, m.fee_schedule_version) for m in markets] == [("PTS-CNY", 1)]
        with pytest.raises(NotFound) as caught:
            await client.quote_order(member, "buy", 1, 1, market_id="NONE-CNY", min_position=at)
        assert caught.value.reason == "MARKET_NOT_FOUND"
