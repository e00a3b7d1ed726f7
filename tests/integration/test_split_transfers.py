"""Transfers between accounts of two command servers that split the slice ranges (no gRPC).

Two command sides over one PostgreSQL schema hold half of the slice ranges each, by lease,
so the database's epoch fence lets each write only its own accounts (command/app/owners.py).
A transfer is driven by the owner of its source: the debit commits there, and the credit is
taken by the owner of the destination, asked directly here as a peer server would be asked
over gRPC. What is proved: cross-owner issues and transfers complete, each account's events
written at its own owner's epoch; a credit the destination refuses returns the points;
transfers in both directions at once conserve points and leave none open; a destination
owner that cannot be reached leaves the transfer open until it answers, then completes it;
the recovery scan on the source's owner finishes a transfer a crash left open, taking its
credit on the other server; an issue is reversed by the member's owner; and a transfer's fee
is taken by the owner of the fee account.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import pytest

from pointex.server.actors.account_actor import Decide
from pointex.server.actors.market_actor import MarketActors
from pointex.server.actors.runtime import wall_clock_ms
from pointex.server.command.app.activations import PendingActivations
from pointex.server.command.app.expiry import LotExpiry
from pointex.server.command.app.handlers import (
    CommandHandlers,
    ReversalRequest,
    TransferRequest,
)
from pointex.server.command.app.handover import RangeHandover, account_range
from pointex.server.command.app.handover import accounts_in as accounts_in_ranges
from pointex.server.command.app.market_handlers import MarketHandlers
from pointex.server.command.app.owners import RangeOwners
from pointex.server.command.app.recovery import range_checkpoint, recover, recover_ranges
from pointex.server.command.app.trade_processes import TradeProcesses
from pointex.server.command.bootstrap import CommandCore, start_core
from pointex.server.command.edge.market_replies import MARKET_REPLIES
from pointex.server.domain import errors, streams
from pointex.server.domain.commands import CloseAccount, MintPoints, OpenAccount
from pointex.server.domain.program import NO_SPAN, TransferFee
from pointex.server.domain.values import OPERATOR, AccountKind, Principal, Role, TransferKind
from pointex.server.elsewhere import Elsewhere
from pointex.server.eventstore.port import SLICE_RANGES, StoreUnavailable, stream_slice
from pointex.server.eventstore.postgres.leases import SliceLeases, slice_range
from pointex.server.eventstore.postgres.store import PostgresEventStore
from pointex.server.slices import range_of
from tests.integration.test_program_rules import set_rules
from tests.integration.test_transfer_unit import check_conservation

pytestmark = pytest.mark.postgres

PROGRAM = streams.program()

ACME = Principal("acme", Role.PARTNER)
LEASE_MS = 120_000  # Held for the whole test without renewal.
HALF = SLICE_RANGES // 2
MEMBERS = 4  # On each server.
FUNDS_POINTS = 1_000
ROUNDS = 30


def accounts_in(ranges: range, prefix: str, count: int) -> list[str]:
    """Return `count` account ids whose slice ranges lie in `ranges`."""
    found = (f"{prefix}{i}" for i in itertools.count())
    return list(
        itertools.islice(
            (a for a in found if slice_range(stream_slice(streams.account(a))) in ranges), count
        )
    )


@dataclass
class Server:
    """The command side of one command server holding some slice ranges."""

    name: str
    store: PostgresEventStore
    ranges: range
    peer: Server | None = None
    unreachable: int = 0  # How many next credits asked of this server fail to reach it.
    core: CommandCore = field(init=False)
    handlers: CommandHandlers = field(init=False)
    leases: SliceLeases = field(init=False)
    stopped: bool = False

    async def start(self) -> None:
        """Hold the ranges, then wire the actors and handlers that write their accounts."""
        leases = self.leases = self.store.slice_leases(f"{self.name}-run", LEASE_MS)
        assert len(await leases.acquire(list(self.ranges))) == len(self.ranges)
        owners = RangeOwners(lambda r: leases.epochs()[r] != 0, self._credit_at_peer)
        self.core = start_core(self.store, resident_max=100, here=owners.here)
        self.handlers = CommandHandlers(
            self.store,
            self.core.actors,
            self.core.lookup,
            self.core.runner,
            self.core.program,
            owners=owners,
        )

    async def _credit_at_peer(self, account_id: str, transfer_id: str) -> int:
        assert self.peer is not None
        assert self.peer.core.actors.here(account_id), account_id
        if self.peer.unreachable:
            self.peer.unreachable -= 1
            raise StoreUnavailable("the owner did not answer")
        return await self.peer.handlers.take_credit(transfer_id)

    async def stop(self) -> None:
        """Finish what runs, commit what is queued."""
        if self.stopped:
            return
        self.stopped = True
        await self.core.runner.stop()
        await self.core.committer.stop()
        await self.core.lookup.stop()

    async def open(self, account_id: str, kind: AccountKind = AccountKind.MEMBER) -> None:
        """Open one of this server's accounts."""
        await self.core.actors.ask(
            account_id, Decide(OpenAccount(OPERATOR, account_id, kind, "acme", ""))
        )

    async def available(self, account_id: str) -> int:
        """Return the available points of one of this server's accounts."""
        state = await self.core.actors.peek(account_id)
        assert state is not None, account_id
        return state.available_points


@pytest.fixture
async def servers(pg_dsn: str, pg_schema: str) -> AsyncIterator[tuple[Server, Server]]:
    """Two command sides, the first holding ranges 0-31 and the second 32-63."""
    first = Server("first", PostgresEventStore(pg_dsn, schema=pg_schema), range(HALF))
    second = Server(
        "second", PostgresEventStore(pg_dsn, schema=pg_schema), range(HALF, SLICE_RANGES)
    )
    first.peer, second.peer = second, first
    for server in (first, second):
        await server.store.open()
        await server.start()
    yield first, second
    for server in (first, second):
        await server.stop()
        await server.store.close()


def transfer(
    request_id: str,
    source: str,
    target: str,
    points: int,
    kind: TransferKind = TransferKind.TRANSFER,
) -> TransferRequest:
    """Return a transfer request of the partner ACME."""
    return TransferRequest(ACME, request_id, kind, source, target, points, "")


async def epochs_of(pg_dsn: str, pg_schema: str, stream_id: str) -> set[int]:
    """Return the epochs a stream's events were written at."""
    connection = await asyncpg.connect(pg_dsn, server_settings={"search_path": pg_schema})
    try:
        rows = await connection.fetch("SELECT epoch FROM events WHERE stream_id = $1", stream_id)
    finally:
        await connection.close()
    return {int(row["epoch"]) for row in rows}


async def funded(first: Server, second: Server) -> tuple[str, list[str], list[str]]:
    """Open a merchant on the first server and members on both; issue points to every member.

    Returns the merchant and each server's members.
    """
    [merchant] = accounts_in(first.ranges, "m", 1)
    ours = accounts_in(first.ranges, "a", MEMBERS)
    theirs = accounts_in(second.ranges, "b", MEMBERS)
    await first.open(merchant, AccountKind.MERCHANT)
    await first.core.actors.ask(merchant, Decide(MintPoints(OPERATOR, merchant, 100_000, "")))
    for member in ours:
        await first.open(member)
    for member in theirs:
        await second.open(member)
    for member in (*ours, *theirs):
        await first.handlers.transfer(
            transfer(f"fund-{member}", merchant, member, FUNDS_POINTS, TransferKind.ISSUE)
        )
    return merchant, ours, theirs


async def test_a_transfer_to_another_servers_account_completes_there(
    servers: tuple[Server, Server], pg_dsn: str, pg_schema: str
) -> None:
    """The source's owner debits, the destination's owner credits, each at its own epoch."""
    first, second = servers
    _, ours, theirs = await funded(first, second)
    done = await first.handlers.transfer(transfer("t1", ours[0], theirs[0], 30))
    assert done.initiated.transfer_id
    assert await first.available(ours[0]) == FUNDS_POINTS - 30
    assert await second.available(theirs[0]) == FUNDS_POINTS + 30
    back = await second.handlers.transfer(transfer("t2", theirs[0], ours[0], 5))
    assert back.position > done.position
    assert await first.available(ours[0]) == FUNDS_POINTS - 25
    assert await epochs_of(pg_dsn, pg_schema, streams.account(ours[0])) == {1}
    assert await epochs_of(pg_dsn, pg_schema, streams.account(theirs[0])) == {1}
    await check_conservation(first.store)
    # The other server's accounts have no actor on this one.
    assert not first.core.actors.here(theirs[0])
    assert first.core.actors.ready(theirs[0]) is None


async def test_a_credit_the_other_server_refuses_returns_the_points(
    servers: tuple[Server, Server],
) -> None:
    """A closed destination on the other server: the debit is returned, with its reason."""
    first, second = servers
    [closed] = accounts_in(second.ranges, "c", 1)
    _, ours, _ = await funded(first, second)
    await second.open(closed)
    await second.core.actors.ask(closed, Decide(CloseAccount(OPERATOR, closed, "")))
    with pytest.raises(errors.FailedPrecondition) as refused:
        await first.handlers.transfer(transfer("to-closed", ours[0], closed, 40))
    assert refused.value.reason == errors.ACCOUNT_CLOSED
    assert await first.available(ours[0]) == FUNDS_POINTS
    await check_conservation(first.store)


async def test_transfers_both_ways_at_once_conserve_points(
    servers: tuple[Server, Server],
) -> None:
    """Each server drives its accounts' transfers to the other's, concurrently, many rounds."""
    first, second = servers
    _, ours, theirs = await funded(first, second)
    requests = []
    for n in range(ROUNDS):
        for i in range(MEMBERS):
            source, target = ours[i], theirs[(i + n) % MEMBERS]
            requests.append((first, transfer(f"ab-{n}-{i}", source, target, 1 + n % 3)))
            requests.append((second, transfer(f"ba-{n}-{i}", target, source, 2)))
    await asyncio.gather(*(server.handlers.transfer(r) for server, r in requests))
    moved_out = sum(1 + n % 3 for n in range(ROUNDS)) * MEMBERS
    moved_in = 2 * ROUNDS * MEMBERS
    ours_now = [await first.available(a) for a in ours]
    theirs_now = [await second.available(b) for b in theirs]
    assert sum(ours_now) == MEMBERS * FUNDS_POINTS - moved_out + moved_in
    assert sum(ours_now) + sum(theirs_now) == 2 * MEMBERS * FUNDS_POINTS
    await check_conservation(first.store)
    assert first.handlers.open_count == second.handlers.open_count == 0


async def test_a_credit_whose_owner_is_away_is_taken_once_it_answers(
    servers: tuple[Server, Server],
) -> None:
    """The transfer stays open while the other server is away, then completes by itself."""
    first, second = servers
    _, ours, theirs = await funded(first, second)
    second.unreachable = 3
    with pytest.raises(StoreUnavailable):
        await first.handlers.transfer(transfer("away", ours[1], theirs[1], 11))
    assert first.handlers.open_count == 1  # Debited, its credit retried in the background.
    async with asyncio.timeout(30):
        while first.handlers.open_count:  # noqa: ASYNC110 - the retry is another task's.
            await asyncio.sleep(0.05)
    assert await second.available(theirs[1]) == FUNDS_POINTS + 11
    # The retry is answered from the record.
    done = await first.handlers.transfer(transfer("away", ours[1], theirs[1], 11))
    assert done.initiated.amount_points == 11
    await check_conservation(first.store)


async def test_recovery_on_the_sources_owner_takes_the_credit_on_the_other_server(
    servers: tuple[Server, Server], pg_dsn: str, pg_schema: str
) -> None:
    """A transfer left open (the debit committed, then a crash) is finished at the next start."""
    first, second = servers
    _, ours, theirs = await funded(first, second)
    second.unreachable = 1_000  # The credit never gets through: the transfer stays open.
    with pytest.raises(StoreUnavailable):
        await first.handlers.transfer(transfer("crash", ours[2], theirs[2], 17))
    await first.stop()  # As if the first server crashed with the transfer open.
    await first.leases.release()  # Expired, as a crashed server's leases end.
    second.unreachable = 0
    restarted = Server(
        "first-again", PostgresEventStore(pg_dsn, schema=pg_schema), first.ranges, second
    )
    await restarted.store.open()
    try:
        await restarted.start()
        second.peer = restarted
        found = await recover(restarted.store, [restarted.handlers.open_steps()])
        assert found == {"transfer": 1}
        assert await second.available(theirs[2]) == FUNDS_POINTS + 17
        assert restarted.handlers.open_count == 0
        await check_conservation(restarted.store)
    finally:
        await restarted.stop()
        await restarted.store.close()


async def test_an_issue_to_another_servers_member_is_reversed_by_the_members_owner(
    servers: tuple[Server, Server],
) -> None:
    """The member's owner drives the reversal; the merchant's credit is taken by the other."""
    first, second = servers
    merchant, _, theirs = await funded(first, second)
    issued = await first.handlers.transfer(
        transfer("gift", merchant, theirs[0], 50, TransferKind.ISSUE)
    )
    before = await first.available(merchant)
    back = ReversalRequest(
        ACME, "take-back", TransferKind.REVERSE_ISSUE, issued.initiated.transfer_id, 20, ""
    )
    head = await first.store.head_position()
    with pytest.raises(Elsewhere):  # Not the member's owner: its edge sends the call there.
        await first.handlers.reverse(back)
    assert await first.store.head_position() == head
    await second.handlers.reverse(back)
    assert await second.available(theirs[0]) == FUNDS_POINTS + 50 - 20
    assert await first.available(merchant) == before + 20
    await check_conservation(first.store)


async def test_a_transfers_fee_is_taken_by_the_fee_accounts_owner(
    servers: tuple[Server, Server],
) -> None:
    """Both members on the first server, the fee account on the second: the fee goes there."""
    first, second = servers
    _, ours, _ = await funded(first, second)
    [fees] = accounts_in(second.ranges, "fees", 1)
    await second.open(fees, AccountKind.MERCHANT)
    # The rules change at the owner of the program's range; the other reads them again.
    rules_at, other = (first, second) if range_of(PROGRAM) in first.ranges else (second, first)
    fee = TransferFee(flat_points=2, per_mille=10, fee_account_id=fees)  # 100 points pay 3.
    await set_rules(cast("Any", rules_at), "rules-fee", 0, transfer_fee=fee)
    await other.core.program.follow()
    done = await first.handlers.transfer(transfer("with-fee", ours[0], ours[1], 100))
    assert done.initiated.fee_points == 3
    assert await first.available(ours[0]) == FUNDS_POINTS - 100 - 3
    assert await first.available(ours[1]) == FUNDS_POINTS + 100
    assert await second.available(fees) == 3
    await check_conservation(first.store)


def _handover(server: Server) -> RangeHandover:
    """Return a server's hand-over of balanced ranges, with timers of its own."""
    actors = server.core.actors
    activations = PendingActivations(actors, server.core.runner, wall_clock_ms)
    expiry = LotExpiry(actors, server.core.runner, wall_clock_ms, lambda: NO_SPAN)
    markets = MarketActors(server.store, server.core.committer, ())  # No market is configured.
    processes = TradeProcesses(
        store=server.store,
        committer=server.core.committer,
        accounts=actors,
        markets=markets,
        providers={},
        clock=wall_clock_ms,
        runner=server.core.runner,
    )
    market = MarketHandlers(
        store=server.store,
        accounts=actors,
        markets=markets,
        processes=processes,
        lookup=server.core.lookup,
        runner=server.core.runner,
        replies=MARKET_REPLIES,
    )
    return RangeHandover(
        server.store, actors, server.handlers, activations, expiry, market, drain_s=1.0
    )


async def test_a_range_handed_over_with_a_transfer_open_is_finished_by_its_taker(
    servers: tuple[Server, Server],
) -> None:
    """The giver forgets the open transfer; the taker's scan finds it and takes its credit.

    Balanced ranges (command/app/handover.py): the range of the transfer's source moves from
    the first server to the second while the transfer is open (its credit never got through).
    """
    first, second = servers
    _, ours, theirs = await funded(first, second)
    moving = account_range(ours[3])
    second.unreachable = 1_000  # The credit never gets through: the transfer stays open.
    with pytest.raises(StoreUnavailable):
        await first.handlers.transfer(transfer("handed", ours[3], theirs[3], 23))
    assert first.handlers.open_count == 1
    # The first gives the range up: its actors there are dropped, the transfer forgotten.
    await first.leases.release([moving])
    await _handover(first).give([moving])
    assert first.handlers.open_count == 0
    with pytest.raises(Elsewhere):
        first.core.actors.actor(ours[3])
    second.unreachable = 0
    assert await second.leases.acquire([moving]) == {moving: 2}
    served: list[bool] = []
    await _handover(second).take([moving], lambda: served.append(True))
    assert served == [True]
    assert await second.available(theirs[3]) == FUNDS_POINTS + 23
    assert await second.available(ours[3]) == FUNDS_POINTS - 23
    assert second.handlers.open_count == 0
    # The range's checkpoint is past the transfer now: taking the range again finds nothing.
    checkpoint = await second.store.load_snapshot(range_checkpoint(moving))
    assert checkpoint is not None
    tracker = second.handlers.open_steps(accounts_in_ranges([moving]))
    await recover_ranges(second.store, [tracker], [moving], account_range, lambda: None)
    assert tracker.open_count() == 0
    await asyncio.sleep(0.3)  # The first server's background retry, had it not forgotten.
    await check_conservation(second.store)
