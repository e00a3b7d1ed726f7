"""A batch written while the next is projected (`then_more`), on both read stores.

The next batch takes the rows the pending one changed from its changes, not from the store;
these tests cut logs whose consecutive batches touch the same accounts, transfers in flight,
pending issues, rules, orders and trades, and check the rows against batches applied one
at a time, and that a write failing meanwhile writes nothing after it.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.projector import Projector
from pointex.server.query.readstore.port import Changes, ReadStore
from pointex.server.store_errors import StoreUnavailable
from pointex.v1 import common_pb2, events_pb2
from tests.feed_events import Log
from tests.integration import test_read_store
from tests.unit.test_market_projections import scenario

# The read-store fixtures of the contract suite, shared as they are.
read_store_url = test_read_store.read_store_url
make_read_store = test_read_store.make_read_store
store = test_read_store.store


def accounts_log() -> list[events_pb2.Event]:
    """Transfers, a return, a pending issue and its activation, rules: each account often."""
    log = Log()
    limit = common_pb2.TransactionLimit(
        operation=common_pb2.LIMITED_OPERATION_TRANSFER, max_points=100
    )
    events = [
        log.opened("m1", "acme", kind=2),
        log.opened("a1", "acme"),
        log.opened("b1", "other"),
        log.minted("m1", 1000, after=1000),
        *log.transfer("m1", "a1", 100, 900, 100),
        log.program_rules_set(limit),
        *log.transfer("a1", "b1", 30, 70, 30),
        *log.returned_transfer("b1", "a1", 5, 25),
    ]
    issue = log.pending_issue("m1", "a1", 50, merchant_after=850, pending_after=50)
    events += issue
    transfer_id = issue[0].transfer_initiated.transfer_id
    events += [
        log.activated("a1", transfer_id, 50, available_after=120, pending_after=0),
        log.program_rules_set(limit, reversal_debt_max=10),
        *log.transfer("b1", "a1", 1, 29, 121),
        *log.transfer("a1", "b1", 21, 100, 50),
    ]
    return events


def market_log() -> list[events_pb2.Event]:
    """Orders placed, matched, settled and cancelled: each order and trade often."""
    return scenario().events


LOGS = {"accounts": accounts_log, "market": market_log}


async def pipelined(
    projector: Projector, events: list[events_pb2.Event], size: int, generation: int | None
) -> int:
    """Apply `events` in batches of `size`, each written while the next is projected."""
    after = 0
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        if generation is None:
            after = await projector.apply_active(batch, then_more=True)
        else:
            after = await projector.apply_to(generation, batch, after, then_more=True)
    await projector.flush(generation)
    return after


@pytest.mark.parametrize("log_name", sorted(LOGS))
async def test_batches_written_while_the_next_is_projected_equal_one_at_a_time(
    store: ReadStore, log_name: str
) -> None:
    """Cut anywhere, a pipelined projection writes exactly the rows of one batch at a time."""
    events = LOGS[log_name]()
    watch = CheckpointWatch(0)
    projector = Projector(store, watch)
    assert await pipelined(projector, events, 3, None) == len(events)
    assert watch.position == await store.checkpoint() == len(events)
    one_at_a_time = await store.create_generation()
    after = 0
    for event in events:
        after = await projector.apply_to(one_at_a_time, [event], after)
    assert await store.count_differences(one_at_a_time) == 0
    for size in (1, 2, 5):
        generation = await store.create_generation()
        assert await pipelined(projector, events, size, generation) == len(events)
        assert await store.checkpoint(generation) == len(events)
        assert await store.count_differences(generation) == 0


class _FailingOnce:
    """A read store whose write of the batch ending at `position` fails, once."""

    def __init__(self, store: ReadStore, position: int) -> None:
        self._store = store
        self._position = position
        self.written: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def apply(self, changes: Changes, generation: int | None = None) -> None:
        if changes.position == self._position:
            self._position = -1
            raise StoreUnavailable("the connection was lost")
        await self._store.apply(changes, generation)
        self.written.append(changes.position)


async def test_a_write_failing_while_the_next_is_projected_stops_there(store: ReadStore) -> None:
    """The next batch is not written; its caller gets the failure; a resync goes on from it."""
    events = accounts_log()
    failing = _FailingOnce(store, 8)
    watch = CheckpointWatch(0)
    projector = Projector(cast("ReadStore", failing), watch)
    assert await projector.apply_active(events[:4], then_more=True) == 4
    assert await projector.apply_active(events[4:8], then_more=True) == 8
    with pytest.raises(StoreUnavailable):
        await projector.apply_active(events[8:12], then_more=True)
    assert failing.written == [4]
    assert watch.position == await store.checkpoint() == 4
    assert await projector.resync() == 4
    # The feed subscriber goes on from the checkpoint, as after any failure.
    assert await pipelined_from(projector, events, 4) == len(events)
    assert failing.written == [4, 8, 12, len(events)]
    generation = await store.create_generation()
    await projector.apply_to(generation, events, 0)
    assert await store.count_differences(generation) == 0


async def pipelined_from(projector: Projector, events: list[events_pb2.Event], start: int) -> int:
    """Apply the active generation's events from `start`: two batches, then the rest."""
    await projector.apply_active(events[start : start + 4], then_more=True)
    await projector.apply_active(events[start + 4 : start + 8], then_more=True)
    return await projector.apply_active(events[start + 8 :])


async def test_pausing_waits_for_the_batch_being_written(store: ReadStore) -> None:
    """Inside `paused` the checkpoint has caught up with every batch applied before it."""
    events = accounts_log()
    watch = CheckpointWatch(0)
    projector = Projector(store, watch)
    await projector.apply_active(events[:4], then_more=True)
    await projector.apply_active(events[4:], then_more=True)
    async with projector.paused():
        assert watch.position == await store.checkpoint() == len(events)
