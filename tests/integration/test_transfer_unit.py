"""Transfers committed in one unit, when both accounts' actors are loaded (no gRPC).

A transfer between two accounts whose actors are resident and have nothing queued is
decided on both at once and committed as one unit of four events; any other transfer takes
the two steps. These tests check the unit itself, a flood of transfers between a few hot
accounts, a unit that does not commit, and a retry after a commit whose outcome was unknown.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from pointex.server import limits
from pointex.server.actors.account_actor import Decide
from pointex.server.actors.program_actor import ProgramActor
from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.handlers import CommandHandlers, TransferDone, TransferRequest
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.runner import ProcessRunner
from pointex.server.command.bootstrap import start_core
from pointex.server.domain import errors
from pointex.server.domain import events as ev
from pointex.server.domain.commands import CloseAccount, FreezeAccount, MintPoints, OpenAccount
from pointex.server.domain.values import OPERATOR, AccountKind, Principal, Role, TransferKind
from pointex.server.eventstore import codec
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import (
    CommitOutcomeUnknown,
    EventStore,
    RecordedEvent,
    StoreUnavailable,
    StreamAppend,
    WrongExpectedVersion,
)
from tests.conftest import MakeStore

ACME = Principal("acme", Role.PARTNER)
HOT = ("h0", "h1", "h2", "h3")
FUNDS_POINTS = 1_000
FLOOD_TRANSFERS = 400
FLOOD_SECONDS_MAX = 60


@dataclass
class Node:
    """The command side of one server over a store."""

    store: EventStore
    committer: GroupCommitter = field(init=False)
    actors: AccountActors = field(init=False)
    lookup: RecordLookup = field(init=False)
    handlers: CommandHandlers = field(init=False)
    runner: ProcessRunner = field(init=False)
    program: ProgramActor = field(init=False)

    def __post_init__(self) -> None:
        """Wire a fresh committer, actor system and handlers."""
        core = start_core(self.store, resident_max=100)
        self.committer, self.actors, self.lookup = core.committer, core.actors, core.lookup
        self.runner, self.program = core.runner, core.program
        self.handlers = CommandHandlers(
            self.store, self.actors, self.lookup, self.runner, core.program
        )

    async def stop(self) -> None:
        """Commit what is queued and stop the tasks."""
        await self.runner.stop()
        await self.committer.stop()
        await self.lookup.stop()

    async def fund(self) -> None:
        """Open a merchant and the hot members, each member with FUNDS_POINTS."""
        await self.actors.ask(
            "m", Decide(OpenAccount(OPERATOR, "m", AccountKind.MERCHANT, "acme", ""))
        )
        await self.actors.ask("m", Decide(MintPoints(OPERATOR, "m", 100_000, "")))
        for member in HOT:
            await self.actors.ask(
                member, Decide(OpenAccount(OPERATOR, member, AccountKind.MEMBER, "acme", ""))
            )
            await self.handlers.transfer(issue(f"fund-{member}", member, FUNDS_POINTS))

    async def available(self, account_id: str) -> int:
        """Return an account's available points as its actor has them."""
        state = await self.actors.peek(account_id)
        assert state is not None, account_id
        return state.available_points


def issue(request_id: str, member: str, amount_points: int) -> TransferRequest:
    """Return an issue from the merchant to `member`."""
    return TransferRequest(ACME, request_id, TransferKind.ISSUE, "m", member, amount_points, "")


def move(request_id: str, source: str, target: str, amount_points: int) -> TransferRequest:
    """Return a member-to-member transfer."""
    return TransferRequest(
        ACME, request_id, TransferKind.TRANSFER, source, target, amount_points, ""
    )


async def read_log(store: EventStore) -> list[RecordedEvent]:
    """Return the whole log, read page by page."""
    log: list[RecordedEvent] = []
    after = 0
    while page := await store.read_all(after, limits.read_batch_events_max):
        log.extend(page)
        after = page[-1].position
    return log


async def check_conservation(store: EventStore) -> dict[str, int]:
    """Assert I1 over the log (nothing in flight afterwards); return each account's points."""
    supply, balances, open_ids = 0, {}, set()
    pending: dict[str, int] = {}  # Pending points by account: stated, or by their changes.
    for recorded in await read_log(store):
        event = codec.decode(recorded)
        account_id = recorded.stream_id.removeprefix("account-")
        match event:
            case ev.PointsMinted():
                supply += event.amount_points
            case ev.PointsBurned() | ev.PointsExpired():  # Out of circulation.
                supply -= event.amount_points
            case ev.TransferInitiated(completed=False):
                open_ids.add(event.transfer_id)
            case ev.TransferCompleted() | ev.TransferCompensated():
                open_ids.discard(event.transfer_id)
            case ev.PointsPending() | ev.PointsActivated():
                pending[account_id] = event.pending_points
            case ev.PointsDebited(pending_transfer_id=taken) if taken:
                pending[account_id] -= event.amount_points
        if hasattr(event, "available_points") and recorded.stream_id.startswith("account-"):
            balances[account_id] = event.available_points
    assert open_ids == set()
    assert sum(balances.values()) + sum(pending.values()) == supply, (balances, pending)
    assert all(points >= 0 for points in [*balances.values(), *pending.values()]), balances
    return balances


@pytest.fixture
async def node(store: EventStore) -> Node:
    """A funded node over a fresh store; stopped by the test."""
    started = Node(store)
    await started.fund()
    return started


async def test_a_transfer_between_loaded_accounts_is_one_unit_of_three_events(
    node: Node, store: EventStore
) -> None:
    """Both actors loaded: three consecutive events, one commit; a retry reads the same end.

    The process record is one TransferInitiated with `completed` set, where the steps write
    TransferInitiated and TransferCompleted.
    """
    try:
        batches = node.committer.batches_committed
        head = await store.head_position()
        done = await node.handlers.transfer(move("one", "h0", "h1", 30))
        assert node.committer.batches_committed == batches + 1
        written = await store.read_all(head, 10)
        assert [(r.stream_id, r.type) for r in written] == [
            ("account-h0", "PointsDebited"),
            ("account-h1", "PointsCredited"),
            (f"transfer-{done.initiated.transfer_id}", "TransferInitiated"),
        ]
        assert codec.decode(written[-1]).completed
        assert [r.position for r in written] == list(range(head + 1, head + 4))
        assert done.position == written[-1].position
        assert done.initiated.from_available_points == FUNDS_POINTS - 30
        again = await node.handlers.transfer(move("one", "h0", "h1", 30))
        assert again == done
        assert await store.head_position() == head + 3
        assert (await node.available("h0"), await node.available("h1")) == (970, 1_030)
    finally:
        await node.stop()
    await check_conservation(store)


async def test_a_caller_gone_while_its_unit_commits_leaves_the_transfer_done(
    make_store: MakeStore,
) -> None:
    """Cancelled while its unit commits: the unit commits, and a retry answers from it."""
    armed, holding, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold(_rows: Sequence[RecordedEvent]) -> None:
        if armed.is_set():
            holding.set()
            await release.wait()

    store = make_store(before_commit=hold)
    await store.open()
    node = Node(store)
    try:
        await node.fund()
        armed.set()
        caller = asyncio.create_task(node.handlers.transfer(move("gone", "h0", "h1", 25)))
        await holding.wait()  # The unit is submitted and its commit under way.
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        # The commit was not cancelled with its caller: the actors keep their state.
        assert node.actors.ready("h0") is not None
        assert node.actors.ready("h1") is not None
        release.set()
        done = await node.handlers.transfer(move("gone", "h0", "h1", 25))  # The retry.
        assert done.initiated.amount_points == 25
        assert (await node.available("h0"), await node.available("h1")) == (975, 1_025)
    finally:
        release.set()
        await node.stop()
    assert (await check_conservation(store))["h1"] == 1_025


async def test_cold_actors_take_the_steps_then_later_transfers_are_one_unit(
    node: Node, store: EventStore
) -> None:
    """A server that has not loaded the accounts yet runs the two steps, then one unit."""
    await node.stop()
    fresh = Node(store)
    try:
        batches = fresh.committer.batches_committed
        await fresh.handlers.transfer(move("cold", "h0", "h1", 10))
        assert fresh.committer.batches_committed == batches + 2
        await fresh.handlers.transfer(move("warm", "h1", "h0", 10))
        assert fresh.committer.batches_committed == batches + 3
    finally:
        await fresh.stop()
    await check_conservation(store)


async def test_refusals_in_one_unit_give_the_reasons_of_the_steps(
    node: Node, store: EventStore
) -> None:
    """Closed, frozen, poor, wrong kind, same account: nothing moves; the steps' reasons."""
    try:
        redeem = TransferRequest(ACME, "empty", TransferKind.REDEEM, "h3", "m", FUNDS_POINTS, "")
        await node.handlers.transfer(redeem)
        await node.actors.ask("h3", Decide(CloseAccount(OPERATOR, "h3", "")))
        await node.actors.ask("h2", Decide(FreezeAccount(OPERATOR, "h2", "")))
        head = await store.head_position()
        cases: Sequence[tuple[TransferRequest, str]] = [
            (move("closed", "h0", "h3", 5), errors.ACCOUNT_CLOSED),
            (move("closed-and-poor", "h0", "h3", FUNDS_POINTS + 1), errors.ACCOUNT_CLOSED),
            (move("frozen", "h2", "h1", 5), errors.ACCOUNT_FROZEN),
            (move("poor", "h0", "h1", FUNDS_POINTS + 1), errors.INSUFFICIENT_POINTS),
            (move("kind", "h0", "m", 5), errors.ACCOUNT_KIND_MISMATCH),
            (move("self", "h0", "h0", 5), errors.SAME_ACCOUNT),
            (move("nobody", "h0", "nobody", 5), errors.ACCOUNT_NOT_FOUND),
        ]
        for request, reason in cases:
            with pytest.raises(errors.DomainError) as refused:
                await node.handlers.transfer(request)
            assert refused.value.reason == reason, request
        assert await store.head_position() == head
        assert await node.available("h0") == FUNDS_POINTS
    finally:
        await node.stop()


async def test_a_flood_between_hot_accounts_both_ways_keeps_i1(
    node: Node, store: EventStore
) -> None:
    """Concurrent transfers among four accounts, unary and batched, in both directions."""
    rng = random.Random(7)
    pairs = [(a, b) for a in HOT for b in HOT if a != b]
    requests = [
        move(f"flood-{n}", *rng.choice(pairs), rng.randint(1, FUNDS_POINTS // 3))
        for n in range(FLOOD_TRANSFERS)
    ]
    try:
        half = FLOOD_TRANSFERS // 2
        async with asyncio.timeout(FLOOD_SECONDS_MAX):  # A deadlock would hang here.
            unary = asyncio.gather(
                *(node.handlers.transfer(r) for r in requests[:half]), return_exceptions=True
            )
            batched = node.handlers.transfer_many(requests[half:])
            outcomes = [*await unary, *await batched]
    finally:
        await node.stop()
    log = {r.position: r for r in await read_log(store)}
    done = [o for o in outcomes if isinstance(o, TransferDone)]
    refused = [o for o in outcomes if not isinstance(o, TransferDone)]
    assert done, "some transfers went through"
    assert all(
        isinstance(o, errors.DomainError) and o.reason == errors.INSUFFICIENT_POINTS
        for o in refused
    ), refused
    for transfer in done:
        end = log[transfer.position]
        # The step's end, or the one unit's record.
        assert end.type == "TransferCompleted" or codec.decode(end).completed, end
        assert end.stream_id == f"transfer-{transfer.initiated.transfer_id}"
    balances = await check_conservation(store)
    assert sum(balances[member] for member in HOT) == len(HOT) * FUNDS_POINTS


class LostOutcomeStore:
    """A store whose next commits holding an event of a type fail, as armed, after COMMIT."""

    def __init__(self, store: EventStore, event_type: str = "PointsCredited") -> None:
        """Wrap `store`; no failure is armed."""
        self._store = store
        self._event_type = event_type
        self.failures: list[Exception] = []

    async def append_batch(
        self, units: Sequence[Sequence[StreamAppend]]
    ) -> list[list[RecordedEvent] | WrongExpectedVersion]:
        """Commit, then raise the armed failure: the commit stands, its outcome is lost."""
        armed = any(
            event.type == self._event_type for unit in units for a in unit for event in a.events
        )
        if not armed or not self.failures:
            return await self._store.append_batch(units)
        await self._store.append_batch(units)
        raise self.failures.pop(0)

    def __getattr__(self, name: str) -> object:
        """Everything else is the wrapped store's."""
        return getattr(self._store, name)


async def test_a_unit_that_does_not_commit_reloads_both_actors_and_moves_nothing(
    make_store: MakeStore,
) -> None:
    """The store fails the unit: both actors reload, nothing moved, the retry starts afresh."""
    failures: list[Exception] = []

    async def fail_armed(rows: Sequence[RecordedEvent]) -> None:
        if failures and any(row.type == "PointsCredited" for row in rows):
            raise failures.pop()

    store = make_store(before_commit=fail_armed)
    await store.open()
    node = Node(store)
    try:
        await node.fund()
        head = await store.head_position()
        batches = node.committer.batches_committed
        failures.append(StoreUnavailable("the store went away"))
        with pytest.raises(StoreUnavailable):
            await node.handlers.transfer(move("lost", "h0", "h1", 40))
        assert await store.head_position() == head
        assert not node.actors.actor("h0").decides_now
        assert not node.actors.actor("h1").decides_now
        assert (await node.available("h0"), await node.available("h1")) == (1_000, 1_000)
        done = await node.handlers.transfer(move("lost", "h0", "h1", 40))
        assert node.committer.batches_committed == batches + 1  # One unit, once reloaded.
        assert done.position == head + 3
        assert (await node.available("h0"), await node.available("h1")) == (960, 1_040)
    finally:
        await node.stop()
    try:
        await check_conservation(store)
    finally:
        await store.close()


async def test_a_retry_after_an_unknown_outcome_finds_the_record(store: EventStore) -> None:
    """The unit committed but its outcome was lost: the retry answers from the record."""
    failing = LostOutcomeStore(store)
    node = Node(failing)  # type: ignore[arg-type]
    try:
        await node.fund()
        head = await store.head_position()
        failing.failures.append(CommitOutcomeUnknown("connection lost during COMMIT"))
        with pytest.raises(StoreUnavailable):
            await node.handlers.transfer(move("unknown", "h0", "h1", 25))
        done = await node.handlers.transfer(move("unknown", "h0", "h1", 25))
        assert done.position == head + 3
        assert await store.head_position() == head + 3
        assert (await node.available("h0"), await node.available("h1")) == (975, 1_025)
    finally:
        await node.stop()
    await check_conservation(store)


async def test_a_debit_whose_outcome_was_lost_is_finished_without_a_retry(
    store: EventStore,
) -> None:
    """The debit committed, its outcome was lost, the client never retries: credited anyway."""
    funded = Node(store)
    await funded.fund()
    await funded.stop()
    failing = LostOutcomeStore(store, event_type="PointsDebited")
    node = Node(failing)  # type: ignore[arg-type] # Cold actors: the transfer takes the steps.
    try:
        failing.failures.append(CommitOutcomeUnknown("connection lost during COMMIT"))
        with pytest.raises(StoreUnavailable):
            await node.handlers.transfer(move("lost", "h0", "h1", 25))
        await node.runner.stop()  # Waits for the reconciliation (bounded), cancels past it.
        ends = [r.type for r in await read_log(store) if r.stream_id.startswith("transfer-")]
        assert ends[-2:] == ["TransferInitiated", "TransferCompleted"]
        assert (await node.available("h0"), await node.available("h1")) == (975, 1_025)
    finally:
        await node.stop()
    await check_conservation(store)


async def test_a_unit_that_meets_another_writer_moves_nothing(
    node: Node, store: EventStore
) -> None:
    """Another server wrote to the destination: the unit conflicts, and the retry succeeds."""
    other = Node(store)
    try:
        await node.actors.peek("h1")
        await other.handlers.transfer(move("elsewhere", "h2", "h1", 100))
        with pytest.raises(WrongExpectedVersion) as conflict:
            await node.handlers.transfer(move("here", "h0", "h1", 50))
        assert conflict.value.stream_id == "account-h1"
        assert await node.available("h0") == FUNDS_POINTS
        await node.handlers.transfer(move("here", "h0", "h1", 50))
        assert await node.available("h1") == FUNDS_POINTS + 150
    finally:
        await other.stop()
        await node.stop()
    await check_conservation(store)
