"""Reversals end to end: ReverseIssue and ReverseRedeem over gRPC, and what the reads show.

Real command and query server processes on SQLite: a partial reversal of an issue takes the
points back from the member, a second is refused by name, and the member's history on the
query server shows the reversal as its own movement; a redemption is given back in full.
"""

from __future__ import annotations

import grpc

from pointex.v1 import command_service_pb2 as cpb
from pointex.v1 import common_pb2
from tests.e2e.test_commands import rid
from tests.e2e.test_program_rules import error_info
from tests.e2e.test_query import Setup, assert_invariants, rpc_error
from tests.e2e.test_query import setup as setup  # noqa: PLC0414 - the fixture, re-exported.


async def test_an_issue_is_reversed_once_and_the_history_shows_it(setup: Setup) -> None:
    """Issue 100, reverse 40: the member keeps 60; again: TRANSFER_ALREADY_REVERSED."""
    s = setup
    issued = await s.acme.call(
        "IssuePoints",
        cpb.IssuePointsRequest(
            request_id=rid(), merchant_account_id=s.merchant, member_account_id=s.alice,
            amount_points=100,
        ),
    )  # fmt: skip
    assert isinstance(issued, cpb.IssuePointsResponse)
    request = cpb.ReverseIssueRequest(
        request_id=rid(), transfer_id=issued.transfer_id, amount_points=40, reason="returned"
    )
    reversed_ = await s.acme.call("ReverseIssue", request)
    assert isinstance(reversed_, cpb.ReverseIssueResponse)
    assert reversed_.member_available_points == 60
    retried = await s.acme.call("ReverseIssue", request)  # The same request id: the same reply.
    assert retried == reversed_
    again = await rpc_error(
        s.acme.call(
            "ReverseIssue",
            cpb.ReverseIssueRequest(
                request_id=rid(), transfer_id=issued.transfer_id, amount_points=1
            ),
        )
    )
    assert again.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(again).reason == "TRANSFER_ALREADY_REVERSED"
    history = await s.q_acme.history(s.alice, reversed_.position)
    assert [(m.kind, m.available_delta_points) for m in history] == [
        (common_pb2.MOVEMENT_KIND_ISSUE_IN, 100),
        (common_pb2.MOVEMENT_KIND_REVERSE_ISSUE_OUT, -40),
    ]
    alice = await s.q_acme.account(s.alice, reversed_.position)
    assert alice.available_points == 60


async def test_a_redemption_is_given_back_in_full(setup: Setup) -> None:
    """Redeem 30 at the merchant, reverse 30: the member has its points again."""
    s = setup
    await s.issue(s.alice, 50)
    redeemed = await s.acme.call(
        "RedeemPoints",
        cpb.RedeemPointsRequest(
            request_id=rid(), member_account_id=s.alice, merchant_account_id=s.merchant,
            amount_points=30,
        ),
    )  # fmt: skip
    assert isinstance(redeemed, cpb.RedeemPointsResponse)
    refund = await s.acme.call(
        "ReverseRedeem",
        cpb.ReverseRedeemRequest(
            request_id=rid(), transfer_id=redeemed.transfer_id, amount_points=30
        ),
    )
    assert isinstance(refund, cpb.ReverseRedeemResponse)
    alice = await s.q_acme.account(s.alice, refund.position)
    assert alice.available_points == 50
    unknown = await rpc_error(
        s.acme.call(
            "ReverseRedeem",
            cpb.ReverseRedeemRequest(request_id=rid(), transfer_id="nope", amount_points=1),
        )
    )
    assert (unknown.code(), error_info(unknown).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "TRANSFER_NOT_FOUND",
    )


async def test_under_a_debt_policy_a_reversal_of_spent_points_goes_below_zero(
    setup: Setup,
) -> None:
    """Policy 100: the member spent 80 of 100 issued; taking back 100 leaves -80, then credits."""
    s = setup
    issued = await s.acme.call(
        "IssuePoints",
        cpb.IssuePointsRequest(
            request_id=rid(), merchant_account_id=s.merchant, member_account_id=s.alice,
            amount_points=100,
        ),
    )  # fmt: skip
    assert isinstance(issued, cpb.IssuePointsResponse)
    await s.transfer(s.acme, s.alice, s.bob, 80)
    take_back = cpb.ReverseIssueRequest(
        request_id=rid(), transfer_id=issued.transfer_id, amount_points=100
    )
    refused = await rpc_error(s.acme.call("ReverseIssue", take_back))
    assert error_info(refused).reason == "POINTS_ALREADY_SPENT"
    policy = await s.operator.call(
        "SetProgramRules",
        cpb.SetProgramRulesRequest(
            request_id=rid(), rules=common_pb2.ProgramRules(reversal_debt_max_points=100)
        ),
    )
    assert isinstance(policy, cpb.SetProgramRulesResponse)
    reversed_ = await s.acme.call("ReverseIssue", take_back)
    assert isinstance(reversed_, cpb.ReverseIssueResponse)
    assert reversed_.member_available_points == -80
    alice = await s.q_acme.account(s.alice, reversed_.position)
    assert alice.available_points == -80
    repaid = await s.issue(s.alice, 100)
    alice = await s.q_acme.account(s.alice, repaid)
    assert alice.available_points == 20
    await assert_invariants(s.q_operator, repaid)
