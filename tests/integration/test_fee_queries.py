"""QuoteTransfer, the fee schedule's version and fee movements over real gRPC.

As in test_program_queries, the query servicer runs in process on port 0 and is fed
hand-built feed events through `Projector.apply_active`, exactly as the feed subscriber feeds
it; the command server is not needed. Reads go through a gRPC channel as a partner or an
operator.
"""

from __future__ import annotations

import grpc
import pytest

from pointex.client import builders
from pointex.client.aio import AsyncPointexClient
from pointex.client.connection import Targets
from pointex.client.errors import NotFound
from pointex.server import limits
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests import fee_events
from tests.e2e.test_event_feed import error_reason
from tests.fee_events import FeeTransfer
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import ACME_TOKEN, Queries, Served
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served

FEE = fee_events.transfer_fee(2, 15, "fees")  # 2 + ceil(amount * 15 / 1000)


async def _quote(
    queries: Queries, account_id: str, amount_points: int, at: common_pb2.Position
) -> qpb.QuoteTransferResponse:
    request = qpb.QuoteTransferRequest(
        min_position=at, from_account_id=account_id, amount_points=amount_points
    )
    reply = await queries.call("QuoteTransfer", request)
    assert isinstance(reply, qpb.QuoteTransferResponse)
    return reply


def _figures(reply: qpb.QuoteTransferResponse) -> tuple[int, int, str, int]:
    """Return (fee, schedule version, fee account, total) of a quote."""
    return (
        reply.quote.fee_points,
        reply.quote.schedule_version,
        reply.fee_account_id,
        reply.total_points,
    )


async def _opened(served: Served, log: Log) -> tuple[str, common_pb2.Position]:
    """Open the fee account `fees` (acme's) and a member of acme's; return it and the position."""
    member = new_id("a")
    at = await served.feed([log.opened("fees", "acme", kind=2), log.opened(member, "acme")])
    return member, at


async def test_without_a_fee_schedule_a_quote_is_free_at_version_0(served: Served) -> None:
    """Before any fee: fee 0 from schedule 0, no fee account, the total is the amount."""
    log = Log()
    member, at = await _opened(served, log)
    reply = await _quote(served.acme, member, 100, at)
    assert _figures(reply) == (0, 0, "", 100)
    assert reply.as_of == at
    at = await served.feed([fee_events.rules_set(log)])
    assert _figures(await _quote(served.acme, member, 100, at)) == (0, 0, "", 100)


async def test_a_quote_follows_the_schedule_in_force_and_names_its_version(
    served: Served,
) -> None:
    """Flat 2 + 15 per mille rounded up; other changes keep the version, a new fee moves it."""
    log = Log()
    member, _ = await _opened(served, log)
    at = await served.feed([fee_events.rules_set(log, FEE)])
    for queries in (served.acme, served.operator):
        assert _figures(await _quote(queries, member, 100, at)) == (4, 1, "fees", 104)
    assert _figures(await _quote(served.acme, member, 999, at)) == (17, 1, "fees", 1016)
    assert _figures(await _quote(served.acme, member, 1, at)) == (3, 1, "fees", 4)
    # The fee account moving its own points pays none; the quote still names the schedule.
    assert _figures(await _quote(served.acme, "fees", 100, at)) == (0, 1, "", 100)
    limit = common_pb2.TransactionLimit(
        operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=500
    )
    at = await served.feed([fee_events.rules_set(log, FEE, limit)])
    assert _figures(await _quote(served.acme, member, 100, at)) == (4, 1, "fees", 104)
    rules = await served.acme.call("GetProgramRules", qpb.GetProgramRulesRequest(min_position=at))
    assert isinstance(rules, qpb.GetProgramRulesResponse)
    assert (rules.version, rules.fee_schedule_version) == (2, 1)
    assert rules.rules.transfer_fee == FEE
    at = await served.feed([fee_events.rules_set(log, fee_events.transfer_fee(0, 10, "fees"))])
    assert _figures(await _quote(served.acme, member, 100, at)) == (1, 3, "fees", 101)


async def test_quote_transfer_refuses_what_it_must(served: Served) -> None:
    """Another partner's account, an unknown one, amounts out of bounds, bad ids and positions."""
    log = Log()
    member, at = await _opened(served, log)

    def ask(account_id: str, amount_points: int, **more: object) -> qpb.QuoteTransferRequest:
        return qpb.QuoteTransferRequest(
            from_account_id=account_id,
            amount_points=amount_points,
            **more,  # type: ignore[arg-type]
        )

    refusals = [
        (served.other, ask(member, 5), grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
        (served.acme, ask("nobody", 5), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"),
        (served.operator, ask("nobody", 5), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"),
        (served.acme, ask(member, 0), grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (served.acme, ask(member, -3), grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE"),
        (
            served.acme,
            ask(member, limits.points_amount_max + 1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "AMOUNT_TOO_LARGE",
        ),
        (served.acme, ask("", 5), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
        (served.acme, ask("x" * 65, 5), grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG"),
        (
            served.acme,
            ask(member, 5, min_position=common_pb2.Position(token=b"\x09bad")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "POSITION_INVALID",
        ),
    ]
    for queries, request, code, reason in refusals:
        assert await queries.error("QuoteTransfer", request) == (code, reason), request
    assert _figures(await _quote(served.acme, member, limits.points_amount_max, at))[3] == (
        limits.points_amount_max
    )


async def test_quote_transfer_never_answers_before_min_position(served: Served) -> None:
    """A quote waits for the rules it must reflect: POSITION_NOT_REACHED, not an older fee."""
    log = Log()
    member, _ = await _opened(served, log)
    ahead = fee_events.rules_set(log, FEE)
    request = qpb.QuoteTransferRequest(
        min_position=ahead.position, from_account_id=member, amount_points=100
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.acme.call("QuoteTransfer", request, timeout_s=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_reason(caught.value) == "POSITION_NOT_REACHED"
    await served.feed([ahead])
    assert _figures(await _quote(served.acme, member, 100, ahead.position)) == (4, 1, "fees", 104)


async def test_history_and_invariants_over_grpc_carry_the_fee(served: Served) -> None:
    """Movement.fee_points on the TRANSFER_OUT, FEE_IN on the fee account, I1 holds."""
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
    at = await served.feed(
        fee_events.one_unit(log, gift, source_after=396, target_after=100, fee_after=4)
    )
    history = await served.acme.call(
        "GetAccountHistory",
        qpb.GetAccountHistoryRequest(account_id=member, min_position=at, newest_first=True),
    )
    assert isinstance(history, qpb.GetAccountHistoryResponse)
    out = history.movements[0]
    assert (out.kind, out.available_delta_points, out.fee_points, out.available_points) == (
        common_pb2.MOVEMENT_KIND_TRANSFER_OUT,
        -104,
        4,
        396,
    )
    fees = await served.acme.call(
        "GetAccountHistory", qpb.GetAccountHistoryRequest(account_id="fees", min_position=at)
    )
    assert isinstance(fees, qpb.GetAccountHistoryResponse)
    assert [
        (m.kind, m.available_delta_points, m.counterparty_account_id) for m in fees.movements
    ] == [(common_pb2.MOVEMENT_KIND_FEE_IN, 4, member)]
    audit = await served.operator.call(
        "CheckInvariants", qpb.CheckInvariantsRequest(min_position=at)
    )
    assert isinstance(audit, qpb.CheckInvariantsResponse)
    assert (audit.ok, audit.in_flight_points, audit.available_points) == (True, 0, 500)


async def test_the_sdk_quotes_a_transfer_and_reads_the_fee_schedule(served: Served) -> None:
    """quote_transfer returns the typed reply whose quote a transfer carries; errors are typed."""
    log = Log()
    member, _ = await _opened(served, log)
    at = await served.feed([fee_events.rules_set(log, FEE)])
    # The command target is never called: the client connects to it on first use only.
    targets = Targets(command="127.0.0.1:9", query=served.target)
    async with AsyncPointexClient(targets, ACME_TOKEN) as client:
        reply = await client.quote_transfer(member, 250, min_position=at)
        assert _figures(reply) == (6, 1, "fees", 256)
        request = builders.transfer(member, "b1", 250, fee_quote=reply.quote).transfer_points
        assert request.fee_quote == common_pb2.FeeQuote(fee_points=6, schedule_version=1)
        rules = await client.get_program_rules(min_position=at)
        assert (rules.fee_schedule_version, rules.rules.transfer_fee.per_mille) == (1, 15)
        with pytest.raises(NotFound) as caught:
            await client.quote_transfer("nobody", 250, min_position=at)
        assert caught.value.reason == "ACCOUNT_NOT_FOUND"
