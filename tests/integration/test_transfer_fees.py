"""Transfer fees on the command side, on both stores: paid, quoted, refused, returned, recovered.

A member-to-member transfer under a fee schedule debits the points and the fee together, and
credits the fee to the program's fee account in the same unit (when every actor is at hand)
or as the process's step after the destination's credit. A fee account that cannot take the
fee gets nothing and the member gets it back; a transfer left credited but not yet paid its
fee is finished by the recovery scan. Points are conserved through all of it (I1).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from pointex.server.actors.account_actor import Decide
from pointex.server.command.app.handlers import TransferRequest
from pointex.server.command.app.recovery import recover
from pointex.server.domain import errors, streams
from pointex.server.domain import events as ev
from pointex.server.domain.commands import CloseAccount, OpenAccount
from pointex.server.domain.program import FeeQuote, TransferFee
from pointex.server.domain.values import OPERATOR, AccountKind, TransferKind
from pointex.server.eventstore import codec
from pointex.server.eventstore.port import EventStore, StreamAppend
from tests.conftest import MakeStore
from tests.integration.test_program_rules import set_rules
from tests.integration.test_transfer_unit import (
    FUNDS_POINTS,
    HOT,
    Node,
    check_conservation,
    move,
    read_log,
)

FEES = TransferFee(flat_points=2, per_mille=10, fee_account_id="fees")  # 100 points pay 3.


async def _open_fee_account(node: Node, account_id: str = "fees") -> None:
    await node.actors.ask(
        account_id,
        Decide(OpenAccount(OPERATOR, account_id, AccountKind.MERCHANT, "acme", "fees")),
    )


async def _started(store: EventStore, fee: TransferFee = FEES) -> Node:
    node = Node(store)
    await node.fund()
    await _open_fee_account(node)
    await set_rules(node, "rules-fee", 0, transfer_fee=fee)
    return node


def _quoted(request: TransferRequest, quote: FeeQuote) -> TransferRequest:
    return TransferRequest(
        request.principal,
        request.request_id,
        request.kind,
        request.from_account_id,
        request.to_account_id,
        request.amount_points,
        request.memo,
        fee_quote=quote,
    )


async def test_a_transfer_pays_its_fee_to_the_fee_account_on_both_paths(
    make_store: MakeStore,
) -> None:
    """Many concurrent transfers, some in one unit and some in steps: every fee arrives."""
    random.seed(7)
    store = make_store()
    await store.open()
    node = await _started(store)
    try:
        amounts = [random.randint(1, 120) for _ in range(60)]
        pairs = [random.sample(HOT, 2) for _ in amounts]
        moves = [
            node.handlers.transfer(move(f"t{i}", source, target, amount))
            for i, ((source, target), amount) in enumerate(zip(pairs, amounts, strict=True))
        ]
        outcomes = await asyncio.gather(*moves, return_exceptions=True)
        fees_account = await node.available("fees")
    finally:
        await node.stop()
    done = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(done) > 40, outcomes  # Most had the points; a refusal is INSUFFICIENT_POINTS.
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, errors.DomainError), outcome
            assert outcome.reason == errors.INSUFFICIENT_POINTS
    paid = sum(outcome.initiated.fee_points for outcome in done)
    assert paid == sum(FEES.fee_of("x", o.initiated.amount_points) for o in done)
    assert fees_account == paid
    log = await read_log(store)
    credited = [r for r in log if r.type == "TransferCredited"]
    one_unit = len(done) - len(credited)
    assert one_unit > 0, "some transfers had every actor at hand"
    balances = await check_conservation(store)
    assert balances["fees"] == paid
    members = sum(balances[member] for member in HOT)
    assert members == len(HOT) * FUNDS_POINTS - paid


async def test_a_stale_quote_is_refused_and_a_good_one_binds(make_store: MakeStore) -> None:
    """A quote of the schedule in force passes; after a change it is FEE_SCHEDULE_CHANGED."""
    store = make_store()
    await store.open()
    node = await _started(store)
    try:
        good = await node.handlers.transfer(_quoted(move("q1", "h0", "h1", 100), FeeQuote(3, 1)))
        await set_rules(node, "rules-2", 1, transfer_fee=TransferFee(9, 0, "fees"))
        before = await node.available("h0")
        with pytest.raises(errors.FailedPrecondition) as caught:
            await node.handlers.transfer(_quoted(move("q2", "h0", "h1", 100), FeeQuote(3, 1)))
        after = await node.available("h0")
    finally:
        await node.stop()
    assert good.initiated.fee_points == 3
    assert caught.value.reason == errors.FEE_SCHEDULE_CHANGED
    assert caught.value.metadata["schedule_version"] == "2"
    assert caught.value.metadata["fee_points"] == "9"
    assert before == after  # Nothing moved.
    await check_conservation(store)


async def test_a_fee_the_fee_account_refuses_goes_back_and_the_transfer_completes(
    make_store: MakeStore,
) -> None:
    """A closed fee account: the destination has the points, the member keeps the fee."""
    store = make_store()
    await store.open()
    node = Node(store)
    try:
        await node.fund()
        await _open_fee_account(node, "gone")
        await node.actors.ask("gone", Decide(CloseAccount(OPERATOR, "gone", "")))
        await set_rules(node, "rules-fee", 0, transfer_fee=TransferFee(5, 0, "gone"))
        done = await node.handlers.transfer(move("r1", "h0", "h1", 100))
        retried = await node.handlers.transfer(move("r1", "h0", "h1", 100))
        h0, h1 = await node.available("h0"), await node.available("h1")
    finally:
        await node.stop()
    assert done.fee_refused_reason == errors.ACCOUNT_CLOSED
    assert retried.fee_refused_reason == errors.ACCOUNT_CLOSED  # The record answers the retry.
    assert retried.position == done.position
    assert (h0, h1) == (FUNDS_POINTS - 100, FUNDS_POINTS + 100)
    returned = [codec.decode(r) for r in await read_log(store) if r.type == "PointsReturned"]
    assert [(e.kind, e.amount_points) for e in returned] == [(TransferKind.FEE, 5)]
    await check_conservation(store)


async def test_recovery_pays_the_fee_of_a_transfer_left_credited(make_store: MakeStore) -> None:
    """A server that died after the destination's credit: the restart credits the fee."""
    store = make_store()
    await store.open()
    node = await _started(store)
    try:
        source = await node.actors.peek("h0")
        target = await node.actors.peek("h1")
        versions = await store.stream_versions(["account-h0", "account-h1"])
    finally:
        await node.stop()
    assert source is not None
    assert target is not None
    key = "left-credited"
    debited = ev.PointsDebited(
        "h0",
        key,
        TransferKind.TRANSFER,
        "h1",
        100,
        "",
        source.available_points - 103,
        fee_points=3,
        fee_account_id="fees",
    )
    initiated = ev.TransferInitiated(
        key,
        TransferKind.TRANSFER,
        "h0",
        "h1",
        100,
        "",
        "req",
        debited.available_points,
        fee_points=3,
        fee_account_id="fees",
    )
    credited = ev.PointsCredited(
        "h1", key, TransferKind.TRANSFER, "h0", 100, "", target.available_points + 100
    )
    # The two steps a dying server committed: the debit, then the destination's credit.
    await store.append(
        [
            StreamAppend("account-h0", versions["account-h0"], (codec.encode(debited),)),
            StreamAppend(streams.transfer(key), 0, (codec.encode(initiated),)),
        ]
    )
    await store.append(
        [
            StreamAppend("account-h1", versions["account-h1"], (codec.encode(credited),)),
            StreamAppend(streams.transfer(key), 1, (codec.encode(ev.TransferCredited(key)),)),
        ]
    )
    node = Node(store)
    try:
        await node.program.load()
        found = await recover(store, (node.handlers.open_steps(),))
        fees_account = await node.available("fees")
    finally:
        await node.stop()
    assert found["transfer"] == 1
    assert fees_account == 3
    ends = [r.type for r in await store.read_stream(streams.transfer(key), 1, 10)]
    assert ends == ["TransferInitiated", "TransferCredited", "TransferCompleted"]
    await check_conservation(store)


async def test_with_every_actor_at_hand_the_fee_commits_in_the_one_unit(
    make_store: MakeStore,
) -> None:
    """The source, the destination and the fee account loaded: one unit of four events."""
    store = make_store()
    await store.open()
    node = await _started(store)
    try:
        await node.actors.peek("fees")  # Resident: the next transfer commits in one unit.
        done = await node.handlers.transfer(move("u1", "h2", "h3", 100))
    finally:
        await node.stop()
    assert done.initiated.fee_points == 3
    unit = [r for r in await read_log(store) if r.position > done.position - 4]
    assert [r.type for r in unit] == [
        "PointsDebited",
        "PointsCredited",
        "PointsCredited",
        "TransferInitiated",
    ]
    assert codec.decode(unit[-1]).completed
