"""A reversal under the program's debt policy over real gRPC: accounts and invariants.

As in test_market_queries, the query servicer runs in process on port 0 and is fed
hand-built feed events through `Projector.apply_active`; reads go through a gRPC channel as
a partner or an operator. Merchant m (acme) gives member a (other) 60; a gives 50 to b; a
ReverseIssue takes the 60 back under a debt policy of 100, leaving a at -50.
"""

from __future__ import annotations

from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import Served
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served


async def _in_debt(served: Served, log: Log) -> tuple[str, str, common_pb2.Position]:
    """Feed the story; return the merchant, the member and the last position."""
    merchant, member, other = new_id("m"), new_id("a"), new_id("b")
    opened = [log.opened(merchant, "acme", kind=2), log.opened(member, "other")]
    await served.feed([*opened, log.opened(other, "other"), log.minted(merchant, 100, after=100)])
    await served.feed(log.transfer(merchant, member, 60, 40, 60))
    await served.feed(log.transfer(member, other, 50, 10, 50))
    rules = log.program_rules_set(reversal_debt_max=100)
    reversal = log.reversal(
        member, merchant, 60, source_after=-50, target_after=100, debt_floor=-100
    )
    at = await served.feed([rules, *reversal])
    return merchant, member, at


async def test_accounts_show_the_negative_balance_of_a_debt(served: Served) -> None:
    """GetAccount and ListAccounts give the available points below zero as they are."""
    _, member, at = await _in_debt(served, Log())
    reply = await served.other.call(
        "GetAccount", qpb.GetAccountRequest(account_id=member, min_position=at)
    )
    assert isinstance(reply, qpb.GetAccountResponse)
    assert (reply.account.available_points, reply.account.held_points) == (-50, 0)
    listed = await served.operator.call(
        "ListAccounts", qpb.ListAccountsRequest(owner_partner_id="other", min_position=at)
    )
    assert isinstance(listed, qpb.ListAccountsResponse)
    assert {a.account_id: a.available_points for a in listed.accounts}[member] == -50


async def test_check_invariants_holds_in_debt_and_after_it(served: Served) -> None:
    """CheckInvariants is ok with the account in debt, and once credits bring it back."""
    log = Log()
    merchant, member, at = await _in_debt(served, log)
    for step in (None, log.transfer(merchant, member, 70, 30, 20)):
        if step is not None:
            at = await served.feed(step)
        reply = await served.operator.call(
            "CheckInvariants", qpb.CheckInvariantsRequest(min_position=at)
        )
        assert isinstance(reply, qpb.CheckInvariantsResponse)
        assert reply.ok, reply
        assert (reply.available_points, reply.minted_points) == (100, 100)
