"""Program rules on the command side, on both stores: set, in force, kept across a restart.

A change commits on the program's stream and binds every transfer decided after it, on
both transfer paths (one unit, and two steps); a transfer committed before it stands. A
restart reads the rules back before any command is decided, and a retry of the change is
answered from its record.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest

from pointex.server.actors.account_actor import Decide, load_account
from pointex.server.command.app.handlers import TransferDone, TransferRequest
from pointex.server.command.app.idempotency import Request
from pointex.server.domain import errors, streams
from pointex.server.domain.commands import SetAccountTier
from pointex.server.domain.program import (
    NO_FEE,
    LimitedOperation,
    Program,
    ProgramRules,
    SetProgramRules,
    TransactionLimit,
    TransferFee,
)
from pointex.server.domain.values import OPERATOR, AccountKind, Principal, Role
from pointex.server.eventstore.port import EventStore
from pointex.v1 import common_pb2, events_pb2
from tests.conftest import MakeStore
from tests.integration.test_transfer_unit import (
    FUNDS_POINTS,
    HOT,
    Node,
    check_conservation,
    move,
    read_log,
)

OPERATOR_PRINCIPAL = Principal("ops", Role.OPERATOR)
TRANSFER_MAX = 40


@dataclass(frozen=True)
class _Reply:
    """What a rules change answers in these tests: the version, then the position."""

    version: int
    position: int = 0


class _Replies:
    """Records a reply as its version; replays it with the record's position."""

    def encode(self, reply: _Reply) -> bytes:
        return str(reply.version).encode()

    def at(self, reply: _Reply, position: int) -> _Reply:
        return _Reply(reply.version, position)

    def decode(self, data: bytes, position: int) -> _Reply:
        return _Reply(int(data), position)


async def set_rules(
    node: Node,
    request_id: str,
    expected: int,
    *limits_: TransactionLimit,
    transfer_fee: TransferFee = NO_FEE,
) -> _Reply:
    """Change the program's rules through the command handlers, as the servicer does."""
    command = SetProgramRules(OPERATOR, expected, ProgramRules(limits_, 0, transfer_fee))
    digest = repr(command).encode()[:32].ljust(32, b"\0")
    return await node.handlers.set_program_rules(
        OPERATOR_PRINCIPAL,
        Request(request_id, "SetProgramRules", digest),
        command,
        _Replies(),
        lambda program: _Reply(program.version),
    )


def at_most(points: int) -> TransactionLimit:
    """At most `points` per member-to-member transfer, for every account."""
    return TransactionLimit(LimitedOperation.TRANSFER, None, "", 0, points, 0)


async def transfer_or_refusal(node: Node, request_id: str, amount: int) -> TransferDone | str:
    """Run one transfer between two hot accounts; return it, or the reason it was refused."""
    source, target = random.sample(HOT, 2)
    try:
        return await node.handlers.transfer(move(request_id, source, target, amount))
    except errors.DomainError as error:
        return error.reason


@pytest.mark.parametrize("seed", [3, 11])
async def test_a_limit_binds_every_transfer_decided_after_it_and_none_before(
    make_store: MakeStore, seed: int
) -> None:
    """Concurrent transfers around a change: none after it carries more than it allows."""
    random.seed(seed)
    store = make_store()
    await store.open()
    node = Node(store)
    try:
        await node.fund()
        before = [transfer_or_refusal(node, f"b{i}", random.randint(1, 80)) for i in range(40)]
        early = await asyncio.gather(*before)
        changed = await set_rules(node, "rules-1", 0, at_most(TRANSFER_MAX))
        after = [transfer_or_refusal(node, f"a{i}", random.randint(1, 80)) for i in range(80)]
        late = await asyncio.gather(*after)
    finally:
        await node.stop()
    assert changed.version == 1
    assert not any(outcome == errors.LIMIT_EXCEEDED for outcome in early)
    refused = [outcome for outcome in late if outcome == errors.LIMIT_EXCEEDED]
    assert refused  # Some amounts above 40 were drawn, and each was refused.
    rules_position = await _rules_position(store)
    for recorded in await read_log(store):
        if recorded.type == "PointsDebited" and recorded.position > rules_position:
            assert _amount(recorded.data) <= TRANSFER_MAX, recorded
    balances = await check_conservation(store)
    assert sum(balances[member] for member in HOT) == FUNDS_POINTS * len(HOT)


async def test_the_rules_are_read_back_on_start_and_a_retry_changes_nothing(
    make_store: MakeStore,
) -> None:
    """After a restart the limit still binds, the version goes on, a retry is replayed."""
    store = make_store()
    await store.open()
    node = Node(store)
    await node.fund()
    first = await set_rules(node, "rules-1", 0, at_most(TRANSFER_MAX))
    await node.stop()

    node = Node(store)
    try:
        assert await node.program.load() == Program(1, ProgramRules((at_most(TRANSFER_MAX),)))
        assert await transfer_or_refusal(node, "big", TRANSFER_MAX + 1) == errors.LIMIT_EXCEEDED
        assert isinstance(await transfer_or_refusal(node, "small", TRANSFER_MAX), TransferDone)
        replayed = await set_rules(node, "rules-1", 0, at_most(TRANSFER_MAX))
        assert replayed == first
        with pytest.raises(errors.FailedPrecondition) as stale:
            await set_rules(node, "rules-2", 0)
        assert stale.value.reason == errors.PROGRAM_RULES_CHANGED
        cleared = await set_rules(node, "rules-3", 1)
        big = await transfer_or_refusal(node, "big-again", TRANSFER_MAX + 1)
    finally:
        await node.stop()
    assert cleared.version == 2
    assert isinstance(big, TransferDone)
    program_events = [e for e in await read_log(store) if e.stream_id == streams.program()]
    assert [e.stream_version for e in program_events] == [1, 2]


async def test_a_gold_member_moves_what_the_gold_limit_allows(make_store: MakeStore) -> None:
    """60 for a gold member, 40 for the others: each account held to its own limit."""
    store = make_store()
    await store.open()
    node = Node(store)
    gold = TransactionLimit(LimitedOperation.TRANSFER, AccountKind.MEMBER, "gold", 0, 60, 0)
    try:
        await node.fund()
        await set_rules(node, "rules-1", 0, at_most(TRANSFER_MAX), gold)
        await node.actors.ask(HOT[0], Decide(SetAccountTier(OPERATOR, HOT[0], "gold")))
        outcomes = [
            await _outcome(node, move("gold-50", HOT[0], HOT[1], 50)),
            await _outcome(node, move("gold-61", HOT[0], HOT[1], 61)),
            await _outcome(node, move("plain-50", HOT[1], HOT[0], 50)),
            await _outcome(node, move("plain-40", HOT[1], HOT[0], 40)),
        ]
    finally:
        await node.stop()
    assert outcomes == ["moved", errors.LIMIT_EXCEEDED, errors.LIMIT_EXCEEDED, "moved"]


async def _outcome(node: Node, request: TransferRequest) -> str:
    try:
        await node.handlers.transfer(request)
    except errors.DomainError as error:
        return error.reason
    return "moved"


async def _rules_position(store: EventStore) -> int:
    recorded = await store.read_stream(streams.program(), 1, 1)
    return recorded[0].position


def _amount(data: bytes) -> int:
    return events_pb2.PointsDebited.FromString(data).amount_points


async def test_a_yearly_cap_holds_under_concurrent_transfers_and_across_a_restart(
    make_store: MakeStore,
) -> None:
    """Each hot member gives at most 300 a year, whatever the concurrency and the restart."""
    random.seed(5)
    yearly = TransactionLimit(LimitedOperation.TRANSFER, None, "", 0, 0, 0, 0, 300)
    store = make_store()
    await store.open()
    node = Node(store)
    try:
        await node.fund()
        await set_rules(node, "rules-1", 0, yearly)
        first = [transfer_or_refusal(node, f"a{i}", random.randint(1, 30)) for i in range(60)]
        early = await asyncio.gather(*first)
    finally:
        await node.stop()
    node = Node(store)  # A restart: the actors load from snapshots and the log.
    try:
        await node.program.load()
        second = [transfer_or_refusal(node, f"b{i}", random.randint(1, 30)) for i in range(60)]
        late = await asyncio.gather(*second)
    finally:
        await node.stop()
    given: dict[str, int] = dict.fromkeys(HOT, 0)
    for recorded in await read_log(store):
        if recorded.type == "PointsDebited":
            debit = events_pb2.PointsDebited.FromString(recorded.data)
            if debit.kind == common_pb2.TRANSFER_KIND_TRANSFER:
                given[debit.account_id] += debit.amount_points
    assert all(points <= 300 for points in given.values()), given
    assert errors.LIMIT_EXCEEDED in early + late  # The cap was reached, and held.
    await check_conservation(store)


async def test_replaying_the_log_from_zero_gives_the_balances_the_actors_hold(
    make_store: MakeStore,
) -> None:
    """Rules changed between transfers: a replay without snapshots ends at the same states."""
    random.seed(13)
    store = make_store()
    await store.open()
    node = Node(store)
    try:
        await node.fund()
        rules = [
            (at_most(30),),
            (TransactionLimit(LimitedOperation.TRANSFER, None, "", 0, 0, 0, 90, 0),),
            (),
        ]
        for version, limits_ in enumerate(rules):
            await set_rules(node, f"rules-{version}", version, *limits_)
            moves = [
                transfer_or_refusal(node, f"m{version}-{i}", random.randint(1, 60))
                for i in range(30)
            ]
            await asyncio.gather(*moves)
        held = {member: await node.actors.peek(member) for member in HOT}
    finally:
        await node.stop()
    await store.delete_snapshots()
    for member, state in held.items():
        replayed, _, _ = await load_account(store, streams.account(member))
        assert replayed == state, member
