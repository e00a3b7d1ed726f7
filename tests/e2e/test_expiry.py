"""Expiry end to end: points lapse on time through both servers, and bad policies are refused.

Real command and query server processes on SQLite, driven over gRPC. The operator sets a
three-second lifetime with a two-second notice; Alice earns 100 points and gives Bob 40,
which keep her lot's expiry. Both are told before, both lots lapse, the history shows the
expiry, and CheckInvariants counts the expired points out of circulation.
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf.duration_pb2 import Duration

from pointex.client.positions import decode_global
from pointex.v1 import common_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.e2e.test_program_rules import error_info, set_rules
from tests.e2e.test_query import Setup, assert_invariants, rpc_error, watch_until
from tests.e2e.test_query import setup as setup  # noqa: PLC0414 - the fixture, re-exported.

LIFETIME_S = 3
NOTICE_S = 2
WAIT_S = 20


def policy(lifetime_s: int, notice_s: int = 0, nanos: int = 0) -> common_pb2.ProgramRules:
    """Rules with only an expiry policy."""
    return common_pb2.ProgramRules(
        expiry=common_pb2.ExpiryPolicy(
            lifetime=Duration(seconds=lifetime_s, nanos=nanos), notice=Duration(seconds=notice_s)
        )
    )


async def test_points_lapse_on_time_and_transferred_points_keep_their_expiry(
    setup: Setup,
) -> None:
    """Told two seconds before, lapsed at three: Alice's 60 and Bob's 40, counted as expired."""
    s = setup
    assert await set_rules(s, 0, policy(LIFETIME_S, NOTICE_S)) == 1
    await s.issue(s.alice, 100)
    await s.transfer(s.acme, s.alice, s.bob, 40)
    async with asyncio.timeout(WAIT_S):
        while True:
            alice = await s.q_acme.call("GetAccount", qpb.GetAccountRequest(account_id=s.alice))
            bob = await s.q_acme.call("GetAccount", qpb.GetAccountRequest(account_id=s.bob))
            assert isinstance(alice, qpb.GetAccountResponse)
            assert isinstance(bob, qpb.GetAccountResponse)
            if alice.account.available_points == bob.account.available_points == 0:
                break
            await asyncio.sleep(0.2)
    at = bob.as_of
    history = await s.q_acme.history(s.bob, at)
    assert [m.kind for m in history][-1] == common_pb2.MOVEMENT_KIND_EXPIRED
    assert history[-1].available_delta_points == -40
    checked = await assert_invariants(s.q_operator, at)
    assert checked.expired_points == 100
    seen = await watch_until(s.q_acme, decode_global(at.token), from_beginning=True)
    kinds = [(n.kind, n.account_id) for n in seen]
    for member in (s.alice, s.bob):
        soon = kinds.index((qpb.NOTIFICATION_KIND_POINTS_EXPIRING_SOON, member))
        assert kinds.index((qpb.NOTIFICATION_KIND_POINTS_EXPIRED, member)) > soon


async def test_a_policy_out_of_its_bounds_is_refused_naming_its_field(setup: Setup) -> None:
    """Fractions of a second, and a notice as long as the lifetime: INVALID_FIELD, nothing set."""
    s = setup
    for rules, field in (
        (policy(LIFETIME_S, nanos=5), "rules.expiry.lifetime"),
        (policy(LIFETIME_S, LIFETIME_S), "rules.expiry.notice"),
    ):
        error = await rpc_error(set_rules(s, 0, rules))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(error)
        assert (info.reason, info.metadata["field"]) == ("INVALID_FIELD", field)
