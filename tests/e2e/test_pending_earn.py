"""Pending earn end to end: an issue whose points activate a moment later, over gRPC.

Real command and query server processes on SQLite: the member sees the points as pending
and cannot spend them; the command server's timer activates them on time; the history and
the invariant audit on the query server count them all along.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pointex.v1 import command_service_pb2 as cpb
from pointex.v1 import common_pb2
from tests.e2e.test_commands import rid
from tests.e2e.test_program_rules import error_info
from tests.e2e.test_query import Setup, assert_invariants, rpc_error
from tests.e2e.test_query import setup as setup  # noqa: PLC0414 - the fixture, re-exported.

DELAY_MS = 1_500
ACTIVATION_WAIT_S = 15


async def test_pending_points_are_visible_not_spendable_and_activate_on_time(
    setup: Setup,
) -> None:
    """Issue 40 pending 1.5 s: pending 40, a spend refused; then available 40, pending 0."""
    s = setup
    at_ms = time.time_ns() // 1_000_000 + DELAY_MS
    activates_at = Timestamp(seconds=at_ms // 1000, nanos=at_ms % 1000 * 1_000_000)
    issued = await s.acme.call(
        "IssuePoints",
        cpb.IssuePointsRequest(
            request_id=rid(), merchant_account_id=s.merchant, member_account_id=s.alice,
            amount_points=40, activates_at=activates_at,
        ),
    )  # fmt: skip
    assert isinstance(issued, cpb.IssuePointsResponse)
    alice = await s.q_acme.account(s.alice, issued.position)
    assert (alice.available_points, alice.pending_points) == (0, 40)
    spend = await rpc_error(s.transfer(s.acme, s.alice, s.bob, 1))
    assert error_info(spend).reason == "INSUFFICIENT_POINTS"
    async with asyncio.timeout(ACTIVATION_WAIT_S):
        while alice.pending_points:
            await asyncio.sleep(0.1)
            alice = await s.q_acme.account(s.alice, issued.position)
    assert (alice.available_points, alice.pending_points) == (40, 0)
    assert time.time_ns() // 1_000_000 >= at_ms  # Not before its time.
    history = await s.q_acme.history(s.alice, issued.position)
    assert [(m.kind, m.available_delta_points, m.pending_delta_points) for m in history] == [
        (common_pb2.MOVEMENT_KIND_ISSUE_PENDING, 0, 40),
        (common_pb2.MOVEMENT_KIND_POINTS_ACTIVATED, 40, -40),
    ]
    audit = await assert_invariants(s.q_operator, None)
    assert audit.pending_points == 0


async def test_an_activation_too_far_ahead_is_refused_and_a_pending_issue_is_cancelled(
    setup: Setup,
) -> None:
    """More than 400 days: INVALID_FIELD. A ReverseIssue of a pending issue takes it back."""
    s = setup
    far = Timestamp(seconds=int(time.time()) + 401 * 86_400)
    too_far = await rpc_error(
        s.acme.call(
            "IssuePoints",
            cpb.IssuePointsRequest(
                request_id=rid(), merchant_account_id=s.merchant, member_account_id=s.alice,
                amount_points=40, activates_at=far,
            ),
        )
    )  # fmt: skip
    assert too_far.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(too_far).metadata["field"] == "activates_at"
    later = Timestamp(seconds=int(time.time()) + 3_600)
    issued = await s.acme.call(
        "IssuePoints",
        cpb.IssuePointsRequest(
            request_id=rid(), merchant_account_id=s.merchant, member_account_id=s.alice,
            amount_points=40, activates_at=later,
        ),
    )  # fmt: skip
    assert isinstance(issued, cpb.IssuePointsResponse)
    cancelled = await s.acme.call(
        "ReverseIssue",
        cpb.ReverseIssueRequest(request_id=rid(), transfer_id=issued.transfer_id, amount_points=40),
    )
    assert isinstance(cancelled, cpb.ReverseIssueResponse)
    alice = await s.q_acme.account(s.alice, cancelled.position)
    assert (alice.available_points, alice.pending_points) == (0, 0)
    await assert_invariants(s.q_operator, cancelled.position)
