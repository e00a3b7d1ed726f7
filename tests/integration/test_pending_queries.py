"""Pending points over real gRPC: accounts, history, invariants and the activation's notice.

As in test_market_queries, the query servicer runs in process on port 0 and is fed
hand-built feed events through `Projector.apply_active`; reads go through a gRPC channel as
a partner or an operator. Merchant m (acme) issues to member a (other): 30 pending, of which
a ReverseIssue takes 12 back before the 18 left activate.
"""

from __future__ import annotations

import asyncio

from pointex.v1 import common_pb2, events_pb2
from pointex.v1 import query_service_pb2 as qpb
from tests.feed_events import Log
from tests.integration import test_market_queries
from tests.integration.test_market_queries import CALL_TIMEOUT_S, Served
from tests.market_events import new_id

# The in-process query server of the market reads' tests, shared as it is.
served = test_market_queries.served

MEMO = "purchase #8812"


def _pending_steps() -> tuple[str, str, str, list[list[events_pb2.Event]]]:
    """Return merchant, member, issue and the story's three steps (batches of feed events)."""
    log = Log()
    merchant, member = new_id("m"), new_id("a")
    opened = [log.opened(merchant, "acme", kind=2), log.opened(member, "other")]
    minted = log.minted(merchant, 100, after=100)
    issued = log.pending_issue(merchant, member, 30, merchant_after=70, pending_after=30, memo=MEMO)
    issue = issued[0].transfer_initiated.transfer_id
    reversal = log.reverse_pending(
        member, merchant, issue, 12, member_available=0, merchant_after=82
    )
    activation = log.activated(member, issue, 18, available_after=18, pending_after=0)
    return merchant, member, issue, [[*opened, minted, *issued], reversal, [activation]]


async def _pending_story(served: Served) -> tuple[str, str, str, common_pb2.Position]:
    """Feed the whole story; return merchant, member, issue and the last position."""
    merchant, member, issue, steps = _pending_steps()
    at = common_pb2.Position()
    for step in steps:
        at = await served.feed(step)
    return merchant, member, issue, at


async def _account(served: Served, account_id: str, at: common_pb2.Position) -> common_pb2.Account:
    reply = await served.other.call(
        "GetAccount", qpb.GetAccountRequest(account_id=account_id, min_position=at)
    )
    assert isinstance(reply, qpb.GetAccountResponse)
    return reply.account


async def test_accounts_and_listings_carry_pending_points(served: Served) -> None:
    """GetAccount and ListAccounts show pending points: 30, then 18, then 0 once active."""
    log = Log()
    merchant, member = new_id("m"), new_id("a")
    await served.feed([log.opened(merchant, "acme", kind=2), log.opened(member, "other")])
    await served.feed([log.minted(merchant, 100, after=100)])
    issued = log.pending_issue(merchant, member, 30, merchant_after=70, pending_after=30)
    at = await served.feed(issued)
    account = await _account(served, member, at)
    assert (account.available_points, account.pending_points) == (0, 30)
    listed = await served.operator.call(
        "ListAccounts", qpb.ListAccountsRequest(owner_partner_id="other", min_position=at)
    )
    assert isinstance(listed, qpb.ListAccountsResponse)
    assert [(a.account_id, a.pending_points) for a in listed.accounts] == [(member, 30)]
    issue = issued[0].transfer_initiated.transfer_id
    at = await served.feed([log.activated(member, issue, 30, available_after=30, pending_after=0)])
    account = await _account(served, member, at)
    assert (account.available_points, account.pending_points) == (30, 0)


async def test_history_gives_pending_deltas_and_pending_points_after(served: Served) -> None:
    """GetAccountHistory: the two new kinds and the reversal, with their pending figures."""
    merchant, member, issue, at = await _pending_story(served)
    reply = await served.other.call(
        "GetAccountHistory", qpb.GetAccountHistoryRequest(account_id=member, min_position=at)
    )
    assert isinstance(reply, qpb.GetAccountHistoryResponse)
    assert [
        (
            m.kind,
            m.available_delta_points,
            m.pending_delta_points,
            m.available_points,
            m.pending_points,
        )
        for m in reply.movements
    ] == [
        (common_pb2.MOVEMENT_KIND_ISSUE_PENDING, 0, 30, 0, 30),
        (common_pb2.MOVEMENT_KIND_REVERSE_ISSUE_OUT, 0, -12, 0, 18),
        (common_pb2.MOVEMENT_KIND_POINTS_ACTIVATED, 18, -18, 18, 0),
    ]
    activated = reply.movements[2]
    assert (activated.counterparty_account_id, activated.transfer_id, activated.memo) == (
        merchant,
        issue,
        MEMO,
    )
    only_activations = await served.other.call(
        "GetAccountHistory",
        qpb.GetAccountHistoryRequest(
            account_id=member, kinds=[common_pb2.MOVEMENT_KIND_POINTS_ACTIVATED]
        ),
    )
    assert isinstance(only_activations, qpb.GetAccountHistoryResponse)
    assert list(only_activations.movements) == [activated]


async def test_check_invariants_counts_pending_points(served: Served) -> None:
    """CheckInvariants reports Σ pending and finds I1 holding at every step of the story."""
    *_, steps = _pending_steps()
    expected = [(70, 30, 0), (82, 18, 0), (100, 0, 0)]
    for step, (available, pending, in_flight) in zip(steps, expected, strict=True):
        at = await served.feed(step)
        reply = await served.operator.call(
            "CheckInvariants", qpb.CheckInvariantsRequest(min_position=at)
        )
        assert isinstance(reply, qpb.CheckInvariantsResponse)
        assert reply.ok, reply
        assert (reply.available_points, reply.pending_points, reply.in_flight_points) == (
            available,
            pending,
            in_flight,
        )
        assert reply.minted_points == 100


async def test_an_activation_notifies_the_member_with_the_issuing_merchant(
    served: Served,
) -> None:
    """The arrival notifies nothing new; the activation is POINTS_RECEIVED from the merchant."""
    merchant, member, issue, at = await _pending_story(served)
    request = qpb.WatchNotificationsRequest(
        from_beginning=True, min_position=at, account_ids=[member]
    )
    call = served.other.stub.WatchNotifications(request, metadata=served.other.metadata)
    got: list[qpb.Notification] = []
    async with asyncio.timeout(CALL_TIMEOUT_S):
        async for message in call:
            assert message.HasField("notification"), message
            got.append(message.notification)
            if len(got) == 2:  # The reversal's POINTS_SENT, then the activation.
                break
    call.cancel()
    assert [n.kind for n in got] == [
        qpb.NOTIFICATION_KIND_POINTS_SENT,
        qpb.NOTIFICATION_KIND_POINTS_RECEIVED,
    ]
    sent, received = (n.points_moved for n in got)
    assert (sent.movement_kind, sent.amount_points) == (
        common_pb2.MOVEMENT_KIND_REVERSE_ISSUE_OUT,
        12,
    )
    assert received.movement_kind == common_pb2.MOVEMENT_KIND_POINTS_ACTIVATED
    assert (received.amount_points, received.available_points) == (18, 18)
    assert (received.counterparty_account_id, received.transfer_id) == (merchant, issue)
