"""Apply batches of feed events to a generation of the read models, one transaction each.

Loading the touched rows (accounts, orders, trades, pending issues, points in flight, rules,
markets), projecting (pure) and writing the changes with the checkpoint happen in order
under `lock` for the active generation; the rebuild takes the same lock (`paused`) to switch
generations between two batches, so no batch straddles the switch.

When the caller already holds the next batch (`then_more`: a catch-up, a replay), a batch's
write may still be under way while the next one is loaded and projected: the next batch then
takes the rows the pending batch changed from its changes, not from the store (`_Written`),
and its own write waits for the pending one to commit. Commits stay one at a time and in
order, and the checkpoint a reader sees moves only as each commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pointex.server.query.checkpoint import CheckpointWatch
from pointex.server.query.projections import keys_of, order_ids_of, project_batch
from pointex.server.query.readstore.market_rows import MarketRow, OrderRow, TradeRow
from pointex.server.query.readstore.port import (
    AccountRow,
    Changes,
    InFlightRow,
    PendingIssueRow,
    ProgramRulesRow,
    ReadStore,
)
from pointex.v1 import events_pb2

_Row = TypeVar("_Row")


@dataclass(frozen=True, slots=True)
class _Written:
    """The rows a batch not yet committed leaves, by key: what the next batch starts from.

    A key in a `*_gone` set has no row once the batch commits.
    """

    accounts: Mapping[str, AccountRow] = field(default_factory=dict)
    orders: Mapping[str, OrderRow] = field(default_factory=dict)
    trades: Mapping[str, TradeRow] = field(default_factory=dict)
    pending_issues: Mapping[str, PendingIssueRow] = field(default_factory=dict)
    pending_issues_gone: Collection[str] = frozenset()
    in_flight: Mapping[str, InFlightRow] = field(default_factory=dict)
    in_flight_gone: Collection[str] = frozenset()
    markets: Mapping[str, MarketRow] = field(default_factory=dict)
    program_rules: ProgramRulesRow | None = None

    @classmethod
    def of(cls, changes: Changes) -> _Written:
        """Return what `changes` leave once committed."""
        added = {row.process_id: row for row in changes.in_flight_added}
        return cls(
            accounts={row.account_id: row for row in changes.accounts},
            orders={row.order_id: row for row in changes.orders},
            trades={row.trade_id: row for row in changes.trades},
            pending_issues={row.transfer_id: row for row in changes.pending_issues},
            pending_issues_gone=frozenset(changes.pending_issues_removed),
            # Removals are applied before additions: a key ended and started again stays.
            in_flight=added,
            in_flight_gone=frozenset(changes.in_flight_removed) - added.keys(),
            markets={row.market_id: row for row in changes.markets},
            program_rules=changes.program_rules,
        )


_NOTHING_WRITTEN = _Written()


@dataclass(frozen=True, slots=True)
class _Pending:
    """A batch being written: its changes and the task writing them."""

    changes: Changes
    task: asyncio.Task[None]

    async def failure(self) -> BaseException | None:
        """Wait for the write to end; return why it failed, or None once committed."""
        await asyncio.wait([self.task])
        if self.task.cancelled():
            return asyncio.CancelledError()
        return self.task.exception()


async def _rows(
    load: Callable[[list[str], int | None], Awaitable[dict[str, _Row]]],
    keys: Sequence[str],
    generation: int | None,
    written: Mapping[str, _Row],
    gone: Collection[str] = frozenset(),
) -> dict[str, _Row]:
    """Return the rows of `keys`: as a batch being written leaves them, else as stored."""
    stored = [key for key in keys if key not in written and key not in gone]
    found = await load(stored, generation) if stored else {}
    for key in keys:
        if key in written:
            found[key] = written[key]
    return found


class Projector:
    """Project feed batches into the read store and advance the served checkpoint."""

    def __init__(self, store: ReadStore, watch: CheckpointWatch) -> None:
        """Write to `store`; advance `watch` after each batch of the active generation."""
        self._store = store
        self._watch = watch
        self.lock = asyncio.Lock()
        # The batch being written, by generation (None: the active one). A failed one stays
        # until its writer sees the failure (`flush`, the next batch) or `resync` drops it.
        self._pending: dict[int | None, _Pending] = {}

    async def apply_active(
        self, events: Sequence[events_pb2.Event], *, then_more: bool = False
    ) -> int:
        """Apply events that continue the active checkpoint; return the new checkpoint.

        With `then_more` the batch may still be being written on return: the caller applies
        the next batch at once or calls `flush`. The checkpoint watch moves as it commits.
        """
        async with self.lock:
            return await self._apply(None, events, self._watch.position, then_more=then_more)

    async def apply_to(
        self,
        generation: int,
        events: Sequence[events_pb2.Event],
        after_position: int,
        *,
        then_more: bool = False,
    ) -> int:
        """Apply events to an inactive generation (a rebuild); return its new checkpoint.

        `after_position` is the checkpoint the last call returned (its batch may still be
        being written, with `then_more`).
        """
        return await self._apply(generation, events, after_position, then_more=then_more)

    async def flush(self, generation: int | None = None) -> None:
        """Wait for the generation's batch being written, if any; raise why it failed."""
        pending = self._pending.pop(generation, None)
        if pending is not None and (failure := await pending.failure()) is not None:
            raise failure

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold the active generation still: no batch is being applied or written meanwhile.

        A batch that fails to commit here stays for the feed subscriber to see and retry.
        """
        async with self.lock:
            pending = self._pending.get(None)
            if pending is not None and await pending.failure() is None:
                del self._pending[None]
            yield

    async def resync(self) -> int:
        """Re-read the active checkpoint after a store error (a COMMIT may have succeeded)."""
        async with self.lock:
            pending = self._pending.pop(None, None)
            if pending is not None:
                await pending.failure()  # The reason for this resync, or a later batch's.
            position = await self._store.checkpoint()
            self._watch.advance(max(position, self._watch.position))
            return self._watch.position

    async def _apply(
        self,
        generation: int | None,
        events: Sequence[events_pb2.Event],
        after_position: int,
        *,
        then_more: bool,
    ) -> int:
        pending = self._pending.get(generation)
        if pending is not None and pending.task.done():
            await self.flush(generation)  # Committed (the checkpoint moved), or failed.
            pending = None
        written = _NOTHING_WRITTEN
        if pending is not None:
            after_position = pending.changes.position
            written = _Written.of(pending.changes)
        changes = await self._project(events, after_position, generation, written)
        await self.flush(generation)
        task = asyncio.create_task(self._write(changes, generation), name="projection-write")
        self._pending[generation] = _Pending(changes, task)
        if not then_more:
            await self.flush(generation)
        return changes.position

    async def _write(self, changes: Changes, generation: int | None) -> None:
        await self._store.apply(changes, generation)
        if generation is None:
            self._watch.advance(changes.position)

    async def _project(
        self,
        events: Sequence[events_pb2.Event],
        after_position: int,
        generation: int | None,
        written: _Written,
    ) -> Changes:
        store = self._store
        keys = keys_of(events)
        accounts = await _rows(store.accounts, keys.account_ids, generation, written.accounts)
        trades = await _rows(store.trades, keys.trade_ids, generation, written.trades)
        # Settling or cancelling a trade changes its orders, which its events do not name.
        order_ids = list(dict.fromkeys([*keys.order_ids, *order_ids_of(trades.values())]))
        orders = await _rows(store.orders, order_ids, generation, written.orders)
        rules = None
        if keys.program_rules:
            rules = written.program_rules or await store.program_rules(generation)
        pending_issues = await _rows(
            store.pending_issues,
            keys.pending_issue_ids,
            generation,
            written.pending_issues,
            written.pending_issues_gone,
        )
        in_flight = await _rows(
            store.in_flight,
            keys.in_flight_ids,
            generation,
            written.in_flight,
            written.in_flight_gone,
        )
        markets: dict[str, MarketRow] = {}
        if keys.markets:
            # A configured market counts on from its row (its fee schedule's version).
            markets = {market.market_id: market for market in await store.markets(generation)}
            markets.update(written.markets)
        return project_batch(
            events,
            accounts,
            after_position,
            orders=orders,
            trades=trades,
            program_rules=rules,
            pending_issues=pending_issues,
            in_flight=in_flight,
            markets=markets,
        )
