"""Reversals on the command side, on both stores: at most once, never more than was moved.

An issue or a redemption is taken back by a transfer of its own, whose first step commits a
TransferReversed on the original's stream at the version it read: of concurrent reversals of
one original exactly one moves points, a retry is answered from its record, and points
already spent are refused by name with nothing moved. Conservation (I1) holds throughout.
"""

from __future__ import annotations

import asyncio

import pytest

from pointex.server.command.app.handlers import ReversalRequest, TransferDone, TransferRequest
from pointex.server.domain import errors, streams
from pointex.server.domain.values import Principal, Role, TransferKind
from tests.conftest import MakeStore
from tests.integration.test_transfer_unit import (
    ACME,
    FUNDS_POINTS,
    HOT,
    Node,
    check_conservation,
    issue,
    move,
    read_log,
)

OTHER = Principal("other", Role.PARTNER)


def reverse(
    request_id: str,
    transfer_id: str,
    amount: int,
    kind: TransferKind = TransferKind.REVERSE_ISSUE,
    principal: Principal = ACME,
) -> ReversalRequest:
    """A reversal of `transfer_id` by `amount` points."""
    return ReversalRequest(principal, request_id, kind, transfer_id, amount, "returned")


async def outcome(node: Node, request: ReversalRequest) -> TransferDone | str:
    """Run a reversal; return it, or the reason it was refused."""
    try:
        return await node.handlers.reverse(request)
    except errors.DomainError as error:
        return error.reason


@pytest.fixture
async def node(make_store: MakeStore) -> Node:
    """A funded command side (merchant m, hot members with FUNDS_POINTS each)."""
    store = make_store()
    await store.open()
    running = Node(store)
    await running.fund()
    return running


async def test_concurrent_reversals_of_one_issue_move_points_once(node: Node) -> None:
    """Ten reversals of one issue at once: one takes 60 back, nine are refused by name."""
    try:
        issued = await node.handlers.transfer(issue("gift", HOT[0], 100))
        original = issued.initiated.transfer_id
        outcomes = await asyncio.gather(
            *(outcome(node, reverse(f"rev-{i}", original, 60)) for i in range(10))
        )
        retried = await outcome(node, reverse("rev-0", original, 60))  # A retry of one of them.
        member = await node.available(HOT[0])
        merchant = await node.available("m")
    finally:
        await node.stop()
    done = [o for o in outcomes if isinstance(o, TransferDone)]
    assert len(done) == 1, outcomes
    assert (
        sorted(o for o in outcomes if isinstance(o, str)) == [errors.TRANSFER_ALREADY_REVERSED] * 9
    )
    assert isinstance(retried, TransferDone) == (done[0].initiated.request_id == "rev-0")
    assert member == FUNDS_POINTS + 100 - 60
    assert merchant == 100_000 - FUNDS_POINTS * len(HOT) - 100 + 60
    reversals = [
        event
        for event in await read_log(node.store)
        if event.stream_id == streams.transfer(original) and event.type == "TransferReversed"
    ]
    assert len(reversals) == 1
    await check_conservation(node.store)


async def test_spent_points_are_refused_by_name_and_nothing_moves(node: Node) -> None:
    """The member gave the issued points away: POINTS_ALREADY_SPENT; reversible later in part."""
    try:
        issued = await node.handlers.transfer(issue("gift", HOT[0], 100))
        original = issued.initiated.transfer_id
        await node.handlers.transfer(move("away", HOT[0], HOT[1], FUNDS_POINTS + 80))
        spent = await outcome(node, reverse("rev-1", original, 100))
        partly = await outcome(node, reverse("rev-2", original, 20))
        left = await node.available(HOT[0])
    finally:
        await node.stop()
    assert spent == errors.POINTS_ALREADY_SPENT
    assert isinstance(partly, TransferDone)  # The refused one wrote nothing, marked nothing.
    assert left == 0
    await check_conservation(node.store)


async def test_only_the_merchants_partner_reverses_and_only_what_matches(node: Node) -> None:
    """Another partner: NOT_OWNER; a redemption reversed as an issue: TRANSFER_NOT_REVERSIBLE."""
    try:
        issued = await node.handlers.transfer(issue("gift", HOT[0], 100))
        original = issued.initiated.transfer_id
        refused = [
            await outcome(node, reverse("r1", original, 10, principal=OTHER)),
            await outcome(node, reverse("r2", original, 10, TransferKind.REVERSE_REDEEM)),
            await outcome(node, reverse("r3", original, 101)),
            await outcome(node, reverse("r4", "no-such-transfer", 10)),
        ]
    finally:
        await node.stop()
    assert refused == [
        errors.NOT_OWNER,
        errors.TRANSFER_NOT_REVERSIBLE,
        errors.REVERSAL_EXCEEDS_ORIGINAL,
        errors.TRANSFER_NOT_FOUND,
    ]


async def test_a_redemption_is_given_back_to_the_member(node: Node) -> None:
    """ReverseRedeem moves the points from the merchant back to the member."""
    try:
        redeemed = await node.handlers.transfer(
            TransferRequest(ACME, "spend", TransferKind.REDEEM, HOT[0], "m", 300, "coffee")
        )
        given_back = await node.handlers.reverse(
            reverse("refund", redeemed.initiated.transfer_id, 300, TransferKind.REVERSE_REDEEM)
        )
        member = await node.available(HOT[0])
    finally:
        await node.stop()
    assert given_back.initiated.kind is TransferKind.REVERSE_REDEEM
    assert (given_back.initiated.from_account_id, given_back.initiated.to_account_id) == (
        "m",
        HOT[0],
    )
    assert member == FUNDS_POINTS
    await check_conservation(node.store)
