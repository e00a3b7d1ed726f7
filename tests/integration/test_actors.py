"""Actors, group commit and transfer processes on a real event store (no gRPC).

The property test drives the command handlers with random commands over a few accounts,
"crashes" the actor system at random moments (its tasks are cancelled mid-command and it is
dropped), restarts it on the same store, and checks conservation (I1) over the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointex.server import limits
from pointex.server.actors.account_actor import AccountActor, Decide
from pointex.server.actors.runtime import AccountActors
from pointex.server.command.app.handlers import CommandHandlers, TransferRequest
from pointex.server.command.app.record_lookup import RecordLookup
from pointex.server.command.app.recovery import recover
from pointex.server.command.app.runner import ProcessRunner
from pointex.server.command.bootstrap import start_core
from pointex.server.domain import errors
from pointex.server.domain import events as ev
from pointex.server.domain.commands import MintPoints, OpenAccount
from pointex.server.domain.values import OPERATOR, AccountKind, Principal, Role, TransferKind
from pointex.server.eventstore import codec
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import (
    EventStore,
    NewEvent,
    RecordedEvent,
    StoreError,
    StreamAppend,
)
from pointex.server.eventstore.sqlite import SqliteEventStore

ACME = Principal("acme", Role.PARTNER)
MEMBERS = ("u0", "u1", "u2", "u3")
PROBE = "probe"


@dataclass
class Node:
    """One incarnation of the command side over a shared store."""

    store: EventStore
    committer: GroupCommitter = field(init=False)
    actors: AccountActors = field(init=False)
    lookup: RecordLookup = field(init=False)
    handlers: CommandHandlers = field(init=False)
    runner: ProcessRunner = field(init=False)

    def __post_init__(self) -> None:
        """Wire a fresh committer, actor system and handlers."""
        core = start_core(self.store, resident_max=100)
        self.committer, self.actors, self.lookup = core.committer, core.actors, core.lookup
        self.runner = core.runner
        self.handlers = CommandHandlers(
            self.store, self.actors, self.lookup, self.runner, core.program
        )


async def settle(store: EventStore, number: int) -> None:
    """Wait until a write the dead node started has ended, as a real crash would end it.

    The store runs a started transaction to its end even when its caller is cancelled; in
    one process that write could land after the next node recovered, which a crashed
    process cannot do. An append of our own queues behind it.
    """
    probe = NewEvent("Probe", 1, b"")
    await store.append([StreamAppend(f"{PROBE}-{number}", 0, (probe,))])


async def read_log(store: EventStore) -> list[RecordedEvent]:
    """Return the whole log but the test's probes, read page by page."""
    log: list[RecordedEvent] = []
    after = 0
    while page := await store.read_all(after, limits.read_batch_events_max):
        log.extend(r for r in page if not r.stream_id.startswith(PROBE))
        after = page[-1].position
    return log


async def log_totals(store: EventStore) -> tuple[int, int, dict[str, int], set[str]]:
    """Return (minted - burned, Σ available, balances, open transfer ids) from the log."""
    supply, balances, open_ids = 0, {}, set()
    for recorded in await read_log(store):
        event = codec.decode(recorded)
        match event:
            case ev.PointsMinted():
                supply += event.amount_points
            case ev.PointsBurned():
                supply -= event.amount_points
            case ev.TransferInitiated(completed=False):
                open_ids.add(event.transfer_id)
            case ev.TransferCompleted() | ev.TransferCompensated():
                open_ids.discard(event.transfer_id)
        if hasattr(event, "available_points") and recorded.stream_id.startswith("account-"):
            balances[recorded.stream_id] = event.available_points
    return supply, sum(balances.values()), balances, open_ids


async def setup_accounts(node: Node) -> None:
    """Open a funded merchant and four members."""
    await node.actors.ask("m", Decide(OpenAccount(OPERATOR, "m", AccountKind.MERCHANT, "acme", "")))
    await node.actors.ask("m", Decide(MintPoints(OPERATOR, "m", 1_000, "")))
    for member in MEMBERS:
        await node.actors.ask(
            member, Decide(OpenAccount(OPERATOR, member, AccountKind.MEMBER, "acme", ""))
        )


transfers = st.lists(
    st.tuples(
        st.sampled_from(("m", *MEMBERS)),
        st.sampled_from(MEMBERS),
        st.integers(min_value=1, max_value=400),
        st.booleans(),  # crash the node while this command runs
        st.integers(min_value=0, max_value=120),  # event-loop turns before the crash
    ),
    min_size=1,
    max_size=25,
)


async def run_scenario(store: EventStore, steps: list[tuple[str, str, int, bool, int]]) -> None:
    """Run `steps` with crashes and restarts; check I1 and that acknowledged transfers exist."""
    node = Node(store)
    await setup_accounts(node)
    acknowledged: list[str] = []
    for number, (source, target, amount, crash, turns) in enumerate(steps):
        kind = TransferKind.ISSUE if source == "m" else TransferKind.TRANSFER
        request = TransferRequest(ACME, f"r{number}", kind, source, target, amount, "")
        task = asyncio.create_task(node.handlers.transfer(request))
        if crash:
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()  # The process dies here; what committed stays committed.
            with contextlib.suppress(asyncio.CancelledError, errors.DomainError, StoreError):
                await task
            node.committer.abort()
            await node.lookup.stop()
            await settle(store, number)
            node = Node(store)  # A new incarnation; the old one is simply dropped.
            await recover(store, (node.handlers.open_steps(),))
            continue
        with contextlib.suppress(errors.DomainError):
            done = await task
            acknowledged.append(done.initiated.transfer_id)
    await node.committer.stop()
    await node.lookup.stop()
    supply, available, balances, open_ids = await log_totals(store)
    assert open_ids == set(), "recovery leaves no transfer in flight"
    assert available == supply, balances
    assert all(balance >= 0 for balance in balances.values())
    finished = {
        event.transfer_id
        for event in map(codec.decode, await read_log(store))
        if isinstance(event, ev.TransferCompleted)
        or (isinstance(event, ev.TransferInitiated) and event.completed)
    }
    assert set(acknowledged) <= finished


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=transfers)
def test_conservation_holds_across_crashes_and_restarts(
    steps: list[tuple[str, str, int, bool, int]],
) -> None:
    """Random issues and transfers with crashes mid-command keep I1 and every acknowledgement."""

    async def scenario(path: Path) -> None:
        store = SqliteEventStore(str(path))
        await store.open()
        try:
            await run_scenario(store, steps)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(Path(folder) / "events.db"))


async def test_resident_actors_stay_within_the_cap(sqlite_file: Path) -> None:
    """40,000 distinct accounts (40 times the cap) leave at most the cap of actors in memory."""
    store = SqliteEventStore(str(sqlite_file))
    await store.open()
    committer = GroupCommitter(store)
    committer.start()
    cap = 1_000
    actors = AccountActors(store, committer, resident_max=cap)
    try:
        touched = 40_000
        chunk = 1_000
        for start in range(0, touched, chunk):
            states = await asyncio.gather(
                *(actors.peek(f"acct-{i}") for i in range(start, start + chunk))
            )
            assert states == [None] * chunk
            assert actors.resident <= cap
        gc.collect()
        alive = sum(isinstance(o, AccountActor) for o in gc.get_objects())
        assert alive <= cap
        assert actors.activations == touched
        assert actors.passivations == touched - actors.resident
    finally:
        await committer.stop()
        await store.close()
