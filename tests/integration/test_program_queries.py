"""GetProgramRules and the account tier over real gRPC, fed through the real projector.

SetProgramRules and SetAccountTier are command-side RPCs; these tests need none of them: as
in test_market_queries, the query servicer runs in process on port 0 and is fed hand-built
feed events through `Projector.apply_active`, exactly as the feed subscriber feeds it. Reads
go through a gRPC channel as a partner or an operator.
"""

from __future__ import annotations

import grpc
import pytest

from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.test_event_feed import error_reason
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import Queries, Served
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served

TRANSFER_AT_MOST_100 = common_pb2.TransactionLimit(
    operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=100
)
GOLD_BUYS_IN_STEPS = common_pb2.TransactionLimit(
    operation=common_pb2.LIMITED_OPERATION_MARKET_BUY,
    account_kind=common_pb2.ACCOUNT_KIND_MEMBER,
    tier="gold",
    min_points=10,
    step_points=10,
)


async def _rules(queries: Queries, at: common_pb2.Position) -> qpb.GetProgramRulesResponse:
    reply = await queries.call("GetProgramRules", qpb.GetProgramRulesRequest(min_position=at))
    assert isinstance(reply, qpb.GetProgramRulesResponse)
    return reply


async def test_program_rules_are_version_0_and_empty_before_the_first_change(
    served: Served,
) -> None:
    """Before any ProgramRulesSet: version 0, no limits, no set_at, as_of the checkpoint."""
    at = await served.feed([Log().opened(new_id("a"), "acme")])
    reply = await _rules(served.acme, at)
    assert (reply.version, list(reply.rules.limits)) == (0, [])
    assert reply.HasField("rules")
    assert not reply.HasField("set_at")
    assert reply.as_of == at


async def test_the_second_program_rules_are_read_at_version_2_by_partners_and_operators(
    served: Served,
) -> None:
    """Two changes: the second is in force, with its version, its time and min_position."""
    log = Log()
    first = log.program_rules_set(TRANSFER_AT_MOST_100)
    await served.feed([first])
    recorded = log.recorded("k1")
    second = log.program_rules_set(GOLD_BUYS_IN_STEPS)
    at = await served.feed([recorded, second])
    for queries in (served.acme, served.operator):
        reply = await _rules(queries, at)
        assert reply.version == 2
        assert list(reply.rules.limits) == [GOLD_BUYS_IN_STEPS]
        assert reply.set_at == second.recorded_at
        assert reply.as_of == at


async def test_get_program_rules_never_answers_before_min_position(served: Served) -> None:
    """A min_position beyond the checkpoint ends with POSITION_NOT_REACHED, not older rules."""
    log = Log()
    await served.feed([log.program_rules_set(TRANSFER_AT_MOST_100)])
    ahead = log.program_rules_set()
    request = qpb.GetProgramRulesRequest(min_position=ahead.position)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.acme.call("GetProgramRules", request, timeout_s=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_reason(caught.value) == "POSITION_NOT_REACHED"
    await served.feed([ahead])
    reply = await _rules(served.acme, ahead.position)
    assert (reply.version, list(reply.rules.limits)) == (2, [])


async def test_get_program_rules_refuses_a_malformed_min_position(served: Served) -> None:
    """A malformed position is INVALID_ARGUMENT / POSITION_INVALID, as for every read."""
    bad = qpb.GetProgramRulesRequest(min_position=common_pb2.Position(token=b"\x09bad"))
    assert await served.acme.error("GetProgramRules", bad) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "POSITION_INVALID",
    )


async def test_get_account_and_list_accounts_carry_the_tier(served: Served) -> None:
    """A tier set shows on GetAccount and ListAccounts with the bumped version; cleared, empty."""
    log = Log()
    gold, plain = new_id("gold"), new_id("plain")
    await served.feed([log.opened(gold, "acme"), log.opened(plain, "acme")])
    at = await served.feed([log.tier_set(gold, "gold"), log.tier_set(plain, "silver")])
    reply = await served.acme.call(
        "GetAccount", qpb.GetAccountRequest(account_id=gold, min_position=at)
    )
    assert isinstance(reply, qpb.GetAccountResponse)
    assert (reply.account.tier, reply.account.version) == ("gold", 2)
    at = await served.feed([log.tier_set(plain, "")])
    listed = await served.operator.call(
        "ListAccounts", qpb.ListAccountsRequest(owner_partner_id="acme", min_position=at)
    )
    assert isinstance(listed, qpb.ListAccountsResponse)
    tiers = {a.account_id: (a.tier, a.version) for a in listed.accounts}
    assert tiers == {gold: ("gold", 2), plain: ("", 3)}


async def test_get_program_rules_carries_the_reversal_debt_policy(served: Served) -> None:
    """The rules are served as stored: the debt policy comes back with the limits."""
    log = Log()
    at = await served.feed([log.program_rules_set(TRANSFER_AT_MOST_100, reversal_debt_max=500)])
    reply = await _rules(served.operator, at)
    assert (reply.version, reply.rules.reversal_debt_max_points) == (1, 500)
    assert list(reply.rules.limits) == [TRANSFER_AT_MOST_100]
    at = await served.feed([log.program_rules_set(TRANSFER_AT_MOST_100)])
    assert (await _rules(served.acme, at)).rules.reversal_debt_max_points == 0
