"""Account snapshots: taken as events accumulate, used at activation, and only a cache."""

from __future__ import annotations

import asyncio

from pointex.server import limits
from pointex.server.actors.account_actor import Decide, load_account
from pointex.server.actors.runtime import AccountActors
from pointex.server.actors.snapshots import SNAPSHOT_TYPE
from pointex.server.domain.commands import MintPoints, OpenAccount
from pointex.server.domain.values import OPERATOR, AccountKind
from pointex.server.eventstore.group_commit import GroupCommitter
from pointex.server.eventstore.port import EventStore, Snapshot


async def mint_many(store: EventStore, count: int) -> AccountActors:
    """Open merchant m and mint 1 point `count` times through a fresh actor system."""
    committer = GroupCommitter(store)
    committer.start()
    actors = AccountActors(store, committer, resident_max=10)
    opened = OpenAccount(OPERATOR, "m", AccountKind.MERCHANT, "acme", "")
    await actors.ask("m", Decide(opened))
    for _ in range(count):
        await actors.ask("m", Decide(MintPoints(OPERATOR, "m", 1, "")))
    await committer.stop()
    await asyncio.sleep(0)  # Let the fire-and-forget snapshot save run.
    for _ in range(100):
        if await store.load_snapshot("account-m") is not None:
            break
        await asyncio.sleep(0.01)
    return actors


async def test_snapshot_is_taken_and_used_at_activation(store: EventStore) -> None:
    """After enough events a snapshot exists; loading from it equals a full replay."""
    count = limits.snapshot_interval_events + 20
    await mint_many(store, count)
    snapshot = await store.load_snapshot("account-m")
    assert snapshot is not None
    assert snapshot.type == SNAPSHOT_TYPE
    assert snapshot.stream_version >= limits.snapshot_interval_events
    from_snapshot_state = await load_account(store, "account-m")
    await store.delete_snapshots()
    replayed_state = await load_account(store, "account-m")
    assert from_snapshot_state == replayed_state
    state, version, position = replayed_state
    assert state is not None
    assert state.available_points == count
    assert version == count + 1
    assert position == await store.head_position()


async def test_unknown_snapshot_schema_is_ignored(store: EventStore) -> None:
    """A snapshot this release cannot read is skipped: the events are replayed instead."""
    await mint_many(store, 3)
    await store.save_snapshot(Snapshot("account-m", 4, SNAPSHOT_TYPE, 99, b"{not json"))
    state, version, _ = await load_account(store, "account-m")
    assert state is not None
    assert (state.available_points, version) == (3, 4)
